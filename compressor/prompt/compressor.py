"""`PromptCompressor`: EHPC (Fei et al., arXiv 2501.12959) loaded from a model folder's prompt_compressor.json.

    pc = PromptCompressor.from_pretrained("out/ehpc")          # reads model/prompt_compressor.json
    short = pc.compress(long_text, rate=0.25, question="What is the pass key?")
    short.text                                                  # compressed context + the question

Every compressor here (EHPC and the comparison baselines) scores tokens and then shares one
selection: the budget counts the whole scored prompt (context + separator + question); the
question, `force` strings and the last N_o tokens are always kept; words are kept whole.
`coarse="passages"` first ranks and keeps passages (compressor/prompt/passages.py), `reorder=True`
writes the kept passages best first; the default is the published token-level selection.

    short = pc.compress(documents=[doc1, doc2, doc3], rate=0.25, question=q, coarse="passages", reorder=True)
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compressor.core.errors import UserError
from compressor.prompt import passages, selection
from compressor.prompt.spec import read_spec, spec_folder

MAX_CHARS = 4_000_000  # before tokenizing at all: no prompt a model of 128k positions could take is longer


MAX_PROMPT_BYTES = MAX_CHARS * 4  # the character cap, at up to 4 bytes a character


def decode_prompt(name: str, raw: bytes) -> str:
    """RAW (a file's bytes, read up to MAX_PROMPT_BYTES + 1) as text; a UserError naming NAME when it is longer
    or not UTF-8."""
    if len(raw) > MAX_PROMPT_BYTES:
        raise UserError(f"{name}: more than {MAX_PROMPT_BYTES // 2**20} MB of prompt; split it first")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{name}: not UTF-8 text (byte {error.start})") from None


def check_prompt_chars(text: str) -> None:
    """UserError for a prompt too long for any compressor, before a tokenizer allocates for it."""
    if len(text) > MAX_CHARS:
        raise UserError(f"prompt: {len(text):,} characters is beyond any scorer's length (at most "
                        f"{MAX_CHARS:,}); split it first")


@dataclass
class Compression:
    method: str
    text: str  # what to send: the compressed context, then the separator and the question if given
    context: str  # the compressed context alone
    question: str | None
    tokens_in: int
    tokens_out: int  # tokens of `text`, re-tokenized
    budget: int
    seconds: float
    source: str = field(repr=False, default="")  # the scored prompt (context + separator + question)
    kept_spans: list[tuple[int, int]] = field(repr=False, default_factory=list)  # in `source`
    span_scores: list[float] = field(repr=False, default_factory=list)
    all_spans: list[tuple[int, int]] = field(repr=False, default_factory=list)

    @property
    def ratio(self) -> float:
        return self.tokens_out / self.tokens_in

    def summary(self) -> dict:
        return {"method": self.method, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "budget": self.budget, "ratio": round(self.ratio, 4), "seconds": round(self.seconds, 4),
                "text": self.text, "context": self.context, "question": self.question}


def _empty(text: str) -> bool:
    return not text or not text.strip()


class TokenScoringCompressor:
    """Base: subclasses give `token_scores(input_ids [1, n]) -> [n]`; selection is shared."""

    method = "base"
    tail_tokens = 0  # the last tokens always kept (EHPC: N_o)
    default_rate = 0.5
    separator = "\n\n"
    max_tokens: int | None = None  # the longest prompt (with its question) the scorer takes: its model's positions
    default_coarse: str | None = None  # None (the published token-level selection) or "passages"
    default_reorder = False

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "is_fast", False):
            raise UserError("prompt compression needs a fast tokenizer (character offsets)")
        self.tokenizer = tokenizer

    def token_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode(self, text: str):
        check_prompt_chars(text)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids = enc["input_ids"]
        if self.max_tokens is not None and len(ids) > self.max_tokens:
            raise UserError(f"prompt: {len(ids):,} tokens (with the question) exceed the scorer's "
                            f"{self.max_tokens:,} positions; shorten or split it")
        return torch.tensor([ids]), [tuple(o) for o in enc["offset_mapping"]]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def compress_ids(self, input_ids, rate: float | None = None, target_tokens: int | None = None,
                     protected: torch.Tensor | None = None) -> torch.Tensor:
        """Token-level selection as published: exactly the budget, original order, the tail kept."""
        ids = torch.as_tensor(input_ids).reshape(1, -1)
        if ids.shape[1] == 0:
            raise UserError("empty prompt: nothing to compress")
        if self.max_tokens is not None and ids.shape[1] > self.max_tokens:
            raise UserError(f"prompt: {ids.shape[1]:,} tokens exceed the scorer's {self.max_tokens:,} positions")
        if rate is None and target_tokens is None:
            rate = self.default_rate
        k = selection.budget(ids.shape[1], rate, target_tokens)
        keep = selection.select_tokens(self.token_scores(ids), k, self.tail_tokens, protected)
        return ids[0, keep]

    def _passage_options(self, coarse: str | None, reorder: bool | None) -> tuple[str, bool]:
        """(coarse, reorder) as asked, the compressor's defaults where not given."""
        coarse = (self.default_coarse or "tokens") if coarse is None else coarse
        if coarse not in passages.COARSE:
            raise UserError(f"coarse {coarse!r}: one of {', '.join(passages.COARSE)}")
        if reorder is None:
            reorder = self.default_reorder and coarse == "passages"
        if reorder and coarse != "passages":
            raise UserError("reorder orders passages: it needs coarse passages")
        return coarse, reorder

    def compress(self, prompt: str | None = None, rate: float | None = None, target_tokens: int | None = None,
                 question: str | None = None, force=(), coarse: str | None = None, reorder: bool | None = None,
                 documents=None) -> Compression:
        """Keep whole words of `prompt` up to the token budget; `question` (appended) and `force` strings kept.

        coarse: "passages" ranks the prompt's paragraphs (or `documents`, joined by blank lines, instead of a
        prompt) and selects words inside the best; "tokens" the published selection; None the compressor's
        default. reorder (passages only): kept passages best first. The scores are computed once, on the
        original order.
        """
        started = time.perf_counter()
        coarse, reorder = self._passage_options(coarse, reorder)
        passage_spans = None
        if documents is not None:
            if prompt:
                raise UserError("give the prompt or its documents, not both")
            prompt, passage_spans = passages.join_documents(documents)
        if _empty(prompt):
            raise UserError("empty prompt: nothing to compress")
        if rate is None and target_tokens is None:
            rate = self.default_rate
        head = prompt + (self.separator if question else "")
        source = head + (question or "")
        ids, offsets = self._encode(source)
        k = selection.budget(ids.shape[1], rate, target_tokens)
        units = selection.split_units(source, offsets)
        protected = selection.occurrences(source, force)
        if question:
            protected.append((len(head), len(source)))
        forced = selection.protected_units(units, protected, self.tail_tokens)
        token_scores = self.token_scores(ids)
        scores = selection.unit_scores(units, token_scores)
        cost = units.cost()
        method = self.method
        if coarse == "passages":
            method += "+passages"
            chosen = passages.select(units, source, passage_spans or passages.split_passages(prompt), token_scores,
                                     scores, cost, forced, k)
            kept = units.with_attached(chosen.kept_units)
        else:
            kept = units.with_attached(selection.select_units(scores, cost, forced, k))
        kept_spans = [units.spans[u] for u in kept]
        context_end = len(prompt)
        if reorder:
            context = passages.reordered_context(source, units, kept, chosen.owner, chosen.order)
            text = self.separator.join(part for part in (context, question) if part)
        else:
            text = "".join(source[s:e] for s, e in kept_spans).strip()
            context = "".join(source[s:min(e, context_end)] for s, e in kept_spans if s < context_end).strip()
        return Compression(method, text, context, question, ids.shape[1], self.count_tokens(text), k,
                           time.perf_counter() - started, source, kept_spans, scores, units.spans)


class PromptCompressor(TokenScoringCompressor):
    """EHPC: token scores from the evaluator heads of layer L* (layers 0..L* loaded, nothing else)."""

    method = "ehpc"

    def __init__(self, tokenizer, scorer, spec):
        super().__init__(tokenizer)
        self.scorer = scorer
        self.spec = spec
        self.max_tokens = getattr(getattr(scorer, "config", None), "max_position_embeddings", None)
        self.tail_tokens = spec.n_o
        self.default_rate = spec.defaults.rate
        self.separator = spec.defaults.separator
        self.default_coarse = spec.defaults.coarse
        self.default_reorder = spec.defaults.reorder

    @classmethod
    def from_pretrained(cls, folder, device: str = "cpu", dtype: torch.dtype = torch.float32) -> "PromptCompressor":
        """FOLDER: a model folder with prompt_compressor.json, or an output folder holding model/."""
        from transformers import AutoTokenizer

        from compressor.prompt.scorer import load_scorer  # transformers modeling and accelerate: when loading

        spec = read_spec(folder)
        model_dir = spec_folder(Path(folder))
        scorer = load_scorer(model_dir, spec, device=device, dtype=dtype)
        return cls(AutoTokenizer.from_pretrained(model_dir), scorer, spec)

    def token_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        device = self.scorer.heads.device
        return self.scorer(input_ids.to(device)).cpu()
