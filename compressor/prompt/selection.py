"""Turning token scores into a kept subset: exact token budgets (as published) and whole-word text spans.

EHPC (arXiv 2501.12959) keeps the top k - N_o tokens in original order plus the last N_o tokens.
For text we select whole words instead (mapped from token scores through the tokenizer's character
offsets), so a multi-byte character or a word is never cut: Korean stays valid text.
"""

import bisect
import math
import re
from dataclasses import dataclass

import torch

from compressor.core.errors import UserError

# A word: its leading whitespace, then a run of letters/digits (Hangul included), a single CJK
# ideograph / kana (no spaces between words there), or one other visible character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
UNIT = re.compile(rf"\s*(?:[{_CJK}]|[^\W{_CJK}]+|[^\w\s])", re.UNICODE)


def budget(n_tokens: int, rate: float | None, target_tokens: int | None) -> int:
    """Tokens to keep: ceil(rate * n) or min(target_tokens, n); validates both."""
    if rate is not None and target_tokens is not None:
        raise UserError("give either rate or target_tokens, not both")
    if target_tokens is not None:
        if target_tokens < 1:
            raise UserError(f"target_tokens must be >= 1, got {target_tokens}")
        return min(int(target_tokens), n_tokens)
    if rate is None or not 0 < rate <= 1:
        raise UserError(f"rate must be in (0, 1], got {rate}")
    return max(1, min(n_tokens, math.ceil(rate * n_tokens)))


def select_tokens(scores: torch.Tensor, k: int, n_o: int, protected: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (ascending) of exactly `k` tokens: the last `n_o` and any `protected`, then the best-scored rest."""
    n = scores.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"budget {k} outside 1..{n}")
    forced = torch.zeros(n, dtype=torch.bool)
    forced[max(0, n - n_o):] = True
    if protected is not None:
        forced |= protected.bool()
    n_forced = int(forced.sum())
    if n_forced > k:
        raise UserError(f"the protected tokens ({n_forced}: last N_o and protected spans) exceed the budget of {k} tokens")
    free = scores.float().masked_fill(forced, float("-inf"))
    extra = free.topk(k - n_forced).indices if k > n_forced else torch.empty(0, dtype=torch.long)
    keep = forced.clone()
    keep[extra] = True
    return keep.nonzero().flatten()


@dataclass(frozen=True)
class Units:
    """The words of a text: character spans covering it, and which tokens fall in each."""
    spans: list[tuple[int, int]]
    token_unit: list[int]  # per token: index of the word its first character belongs to (-1: none)
    attached: dict[int, int]  # a word no token starts in -> the word whose token covers its start

    def with_attached(self, kept: list[int]) -> list[int]:
        """`kept` plus the words that ride on a kept word's token (e.g. the `s` of a `'s` token)."""
        chosen = set(kept)
        chosen |= {u for u, owner in self.attached.items() if owner in chosen}
        return sorted(chosen)

    def cost(self) -> list[int]:
        counts = [0] * len(self.spans)
        for u in self.token_unit:
            if u >= 0:
                counts[u] += 1
        return counts


def split_units(text: str, offsets: list[tuple[int, int]]) -> Units:
    spans = [m.span() for m in UNIT.finditer(text)]
    if spans and spans[-1][1] < len(text):  # trailing whitespace belongs to the last word
        spans[-1] = (spans[-1][0], len(text))
    starts = [s for s, _ in spans]
    token_unit, attached = [], {}
    for s, e in offsets:
        unit = bisect.bisect_right(starts, s) - 1 if e > s and spans else -1
        token_unit.append(unit)
        for covered in range(unit + 1, bisect.bisect_left(starts, e) if unit >= 0 else 0):
            attached.setdefault(covered, unit)
    starting = set(token_unit)
    attached = {u: owner for u, owner in attached.items() if u not in starting}
    return Units(spans, token_unit, attached)


def unit_scores(units: Units, token_scores: torch.Tensor) -> list[float]:
    """Mean score of each word's tokens (a word without a token of its own gets -inf)."""
    totals = [0.0] * len(units.spans)
    counts = units.cost()
    values = token_scores.float().tolist()
    for t, u in enumerate(units.token_unit):
        if u >= 0:
            totals[u] += values[t]
    return [totals[u] / counts[u] if counts[u] else float("-inf") for u in range(len(units.spans))]


def protected_units(units: Units, char_spans: list[tuple[int, int]], tail_tokens: int) -> list[bool]:
    """Words overlapping a protected character span, or holding one of the last `tail_tokens` tokens."""
    forced = [any(s < e2 and e > s2 for s2, e2 in char_spans) for s, e in units.spans]
    if tail_tokens > 0:
        for u in units.token_unit[-tail_tokens:]:
            if u >= 0:
                forced[u] = True
    return forced


def select_units(scores: list[float], cost: list[int], forced: list[bool], k: int) -> list[int]:
    """Word indices (ascending): every forced word, then words by score while their tokens fit in `k`."""
    used = sum(c for c, f in zip(cost, forced) if f)
    if used > k:
        raise UserError(f"the protected text (question, forced spans, last N_o tokens) needs {used} tokens, "
                        f"more than the budget of {k}: raise the rate or the target")
    keep = list(forced)
    for u in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if keep[u]:
            continue
        if cost[u] == 0 and scores[u] == float("-inf"):
            continue
        if used + cost[u] <= k:
            keep[u] = True
            used += cost[u]
            if used == k:
                break
    return [u for u, kept in enumerate(keep) if kept]


def occurrences(text: str, needles) -> list[tuple[int, int]]:
    """Character spans of every occurrence of each string in `needles` (UserError for one that is absent)."""
    spans = []
    for needle in needles:
        if not needle:
            continue
        found = [m.start() for m in re.finditer(re.escape(needle), text)]
        if not found:
            raise UserError(f"force-keep text {needle!r} does not occur in the prompt")
        spans += [(s, s + len(needle)) for s in found]
    return spans
