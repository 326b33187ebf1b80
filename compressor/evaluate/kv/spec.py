"""What a KV press run asks for: which kvpress press, how hard, and the long-context measurement.

Plain pydantic (no torch, no kvpress import) so recipes validate without loading anything. The names
map onto NVIDIA kvpress 0.5.5 classes (compressor/evaluate/kv_press.py builds them); only presses whose
compression is "score every cached position, keep the best" (kvpress `ScorerPress` with its own
`compress`) are offered, because the evaluation re-targets the cache size at every step.
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from compressor.core.validation import MAX_TOKENS, Strict

# name in recipes / on the command line -> kvpress class
PRESSES = {
    "streaming_llm": "StreamingLLMPress",        # Xiao et al. 2023, arXiv 2309.17453
    "snapkv": "SnapKVPress",                     # Li et al. 2024, arXiv 2404.14469
    "knorm": "KnormPress",                       # Devoto et al. 2024, arXiv 2406.11430
    "expected_attention": "ExpectedAttentionPress",  # Devoto et al. 2025, arXiv 2510.00636
    # others from kvpress by name (each exercised on a tiny model in tests/test_kvpress.py)
    "tova": "TOVAPress",
    "keydiff": "KeyDiffPress",
    "random": "RandomPress",
    "lagkv": "LagKVPress",
    "cap": "CapPress",
}
PRESS_NAMES = ("none", *PRESSES)


class KVPressSpec(Strict):
    """A kvpress press applied while the KV cache grows (torch runtime only)."""

    press: str = Field("none", description=f"one of {', '.join(PRESS_NAMES)}")
    ratio: float = Field(0.0, description="fraction of cached positions removed, in [0, 1)")
    n_sink: int | None = Field(None, ge=0, le=MAX_TOKENS, description="first positions always kept (presses with sinks; "
                                                       "kvpress default 4)")
    window: int | None = Field(None, gt=0, le=MAX_TOKENS, description="streaming_llm: recent positions kept besides the sinks "
                                                       "(fixed cache of n_sink + window, as in the paper)")
    options: dict = Field(default_factory=dict, description="other fields of the kvpress class, e.g. "
                                                            "{window_size: 64} for snapkv")

    @model_validator(mode="after")
    def _check(self):
        if self.press not in PRESS_NAMES:
            raise ValueError(f"unknown press {self.press!r} (known: {', '.join(PRESS_NAMES)})")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.window is not None and self.press != "streaming_llm":
            raise ValueError("window is a streaming_llm parameter (use ratio for other presses)")
        if self.press == "streaming_llm" and self.window is not None and self.ratio:
            raise ValueError("streaming_llm takes either window (fixed cache) or ratio, not both")
        if self.press == "none" and (self.ratio or self.window or self.n_sink is not None or self.options):
            raise ValueError("press none takes no ratio, window, n_sink or options")
        return self

    @property
    def active(self) -> bool:
        return self.press != "none"

    def label(self) -> str:
        if self.window is not None:
            return f"{self.press}@{self.n_sink if self.n_sink is not None else 4}+{self.window}"
        return f"{self.press}@{self.ratio:g}" if self.active else "none"


class LongContextSpec(Strict):
    """Perplexity on one long document with the press applied while the cache grows, then decoding."""

    tokens: int = Field(4096, ge=64, le=MAX_TOKENS, description="document length (the corpus `long` split, joined)")
    chunk: int = Field(128, ge=1, le=MAX_TOKENS, description="prefill chunk: the press compresses after each chunk")
    decode_tokens: int = Field(32, ge=2, le=MAX_TOKENS, description="greedy tokens timed once the cache is full")
    compare: list[KVPressSpec] = Field(default_factory=list, description="further presses measured the same way")
    vary: dict[Literal["window", "n_sink", "ratio"], list[Annotated[float, Field(ge=0, le=MAX_TOKENS)]]] = Field(
        default_factory=dict, description="ablations: the run's press with one field changed, e.g. {window: [64, 256]}")
