"""A greedy decoding loop with an explicit KV cache, for runs with a KV press.

transformers' `generate` derives positions and masks from the cache length, which a press changes.
Here every forward pass gets both: `cache_position` indexes the (compressed) cache, so the causal mask
of a chunk is right, and `position_ids` are the true positions in the text (or, for StreamingLLM,
positions within the cache, as in its paper). Every measurement of a press run (the model with the
press, without it, and the source) goes through this loop, so their times compare like with like.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch

from compressor.core.errors import UserError
from compressor.evaluate.kv.press import CacheCompressor, CompressionState, cache_bytes
from compressor.evaluate.kv.spec import KVPressSpec
from compressor.evaluate.latency import fixed_prompt
from compressor.models.adapters import adapter_for

# StreamingLLM prompts are prefilled in chunks of this many tokens (the cache never holds more than
# n_sink + window + PREFILL_CHUNK positions); other presses prefill a prompt in one pass, as kvpress does.
PREFILL_CHUNK = 128


class PressRuntime:
    def __init__(self, model, spec: KVPressSpec | None = None, adapter=None):
        self.model = model
        self.spec = spec or KVPressSpec()
        self.compressor = CacheCompressor(model, self.spec, adapter or adapter_for(model.config))
        self.device = next(model.parameters()).device

    @contextlib.contextmanager
    def session(self):
        """Hooks installed for the duration; use one session for many sequences."""
        with self.compressor.active(), torch.inference_mode():
            yield self

    def new_cache(self):
        from transformers import DynamicCache

        self.compressor.state = CompressionState()
        return DynamicCache()

    @property
    def state(self) -> CompressionState:
        return self.compressor.state

    def forward(self, ids: torch.Tensor, cache, all_logits: bool = False) -> torch.Tensor:
        """One pass over `ids` (batch, n) appended to `cache`; the press compresses the cache afterwards."""
        n = ids.shape[1]
        cache_len = cache.get_seq_length()
        first = cache_len if self.compressor.rerotate else self.state.seen
        self.state.seen += n
        self.compressor.set_offset(first)
        cache_position = torch.arange(cache_len, cache_len + n, device=self.device)
        position_ids = torch.arange(first, first + n, device=self.device).unsqueeze(0).expand(ids.shape[0], n)
        out = self.model(input_ids=ids.to(self.device), past_key_values=cache, cache_position=cache_position,
                         position_ids=position_ids, use_cache=True, logits_to_keep=0 if all_logits else 1)
        self.state.peak_cache_bytes = max(self.state.peak_cache_bytes, cache_bytes(cache))
        return out.logits

    def prefill(self, ids: torch.Tensor, cache) -> torch.Tensor:
        """Logits of the last prompt position (chunked for StreamingLLM, one pass otherwise)."""
        step = PREFILL_CHUNK if self.compressor.rerotate else ids.shape[1]
        logits = None
        for start in range(0, ids.shape[1], step):
            logits = self.forward(ids[:, start:start + step], cache)
        return logits[:, -1]

    def greedy(self, ids: torch.Tensor, new_tokens: int, stop=lambda generated: False, clock=None) -> torch.Tensor:
        """Greedy continuation of `ids` (batch, n): (batch, <= new_tokens) tokens.

        `stop(generated)` ends early; `clock()` is called after the prefill and after each decode step.
        """
        cache = self.new_cache()
        logits = self.prefill(ids, cache)
        generated = []
        for step in range(new_tokens):
            token = logits.argmax(-1, keepdim=True)
            if clock:
                clock()
            generated.append(token)
            if step + 1 == new_tokens or stop(torch.cat(generated, dim=1)):
                break
            logits = self.forward(token, cache)[:, -1]
        return torch.cat(generated, dim=1)


def time_per_token_press(model, tokenizer, spec: KVPressSpec | None, prompt_tokens: int = 128, new_tokens: int = 32,
                         runs: int = 5, warmup: int = 1, batch_size: int = 1) -> dict:
    """`latency.time_per_token` measured through the press loop: the same prompt, stamps and statistics."""
    if prompt_tokens < 1 or new_tokens < 2 or runs < 1 or warmup < 0 or batch_size < 1:
        raise UserError("latency: need prompt_tokens >= 1, new_tokens >= 2, runs >= 1, warmup >= 0, batch_size >= 1")
    runtime = PressRuntime(model, spec)
    ids = torch.tensor([fixed_prompt(tokenizer, prompt_tokens)] * batch_size, device=runtime.device)
    cuda = runtime.device.type == "cuda"

    def one_run(session) -> tuple[float, float]:
        stamps: list[float] = []

        def clock():
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        start = time.perf_counter()
        out = session.greedy(ids, new_tokens, clock=clock)
        if out.shape[1] != new_tokens or len(stamps) != new_tokens:
            raise RuntimeError(f"the press loop made {out.shape[1]} tokens, expected {new_tokens}")
        return 1000 * (stamps[-1] - stamps[0]) / (new_tokens - 1), 1000 * (stamps[0] - start)

    with runtime.session() as session:
        for _ in range(warmup):
            one_run(session)
        tpt, prefill = zip(*(one_run(session) for _ in range(runs)))
    first = next(model.parameters())
    return {
        "tpt_ms_median": statistics.median(tpt), "tpt_ms_min": min(tpt), "tpt_ms_max": max(tpt),
        "tpt_ms_runs": [round(t, 4) for t in tpt], "prefill_ms_median": statistics.median(prefill),
        "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "runs": runs, "batch_size": batch_size,
        "device": str(first.device), "dtype": str(first.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(), "engine": "press loop", "kv_press": runtime.spec.label(),
        "kv_cache_mb_peak": round(runtime.state.peak_cache_bytes / 2**20, 3),
    }
