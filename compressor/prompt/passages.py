"""Coarse passage selection before EHPC's word selection (the `coarse: passages` option).

Coarse-to-fine as in LongLLMLingua (Jiang et al., arXiv 2310.06839, §4.1: question-aware document
ranking, then fine-grained token compression inside the kept documents), with EHPC's evaluator-head
token scores (arXiv 2501.12959) in place of LongLLMLingua's perplexities. The token scores are computed
once, on the prompt in its original order with the question last; ranking, keeping and reordering
passages only decide which words are kept and in which order the text is written out.

- Passages: the prompt's paragraphs (split on blank lines), or documents given explicitly.
- Rank: a passage's score is the mean of its PASSAGE_TOP best tokens, each token's score taken relative to
  the mean score of the CONTRAST_WINDOW tokens around it. Raw attention from the question's queries
  favours the prompt's first tokens (the attention sink) and its last passages (recency), whatever they
  say; the local ratio asks which passage stands out from its surroundings. Measured with SmolLM2's
  evaluator heads on the 15 English and 15 Korean items of scripts/make_ehpc_tasks.py: the asked needle's
  passage ranked first in 8/15 and 10/15 (the plain scores' mean, max or top-16: 0/15 in both, the first
  paragraph on top), and still 8/15 and 10/15 with each needle glued into a long paragraph, where the
  passage mean of the same ratios fell to 5/15 and 6/15 (a short needle diluted).
- Keep: passages in rank order until their tokens cover the free budget plus SLACK_TOKENS (LongLLMLingua's
  `control_context_budget` with its `context_budget="+100"`: the passage that crosses the line is kept).
- Fine: the published word selection over the kept passages' words, one exact budget for all of them.
  LongLLMLingua shares its budget by rank (`dynamic_context_compression_ratio`) because its token
  perplexities are computed chunk by chunk; EHPC's scores come from one pass over the whole prompt and
  are comparable across passages, so the higher-ranked passages already win more of a shared budget.
- Protected words (question, force strings, the last N_o tokens) are kept whatever their passage's rank.
"""

import bisect
import re
from dataclasses import dataclass

import torch

from compressor.core.errors import UserError
from compressor.prompt import selection

COARSE = ("tokens", "passages")
PASSAGE_TOP = 16
CONTRAST_WINDOW = 512
SINK_TOKENS = 32  # the sink is token 0; EHPC's smoothing (kernel 32) spreads it over the next 16
SLACK_TOKENS = 100
PASSAGE_JOIN = "\n\n"
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")


def _stripped(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    if not piece.strip():
        return None
    left = len(piece) - len(piece.lstrip())
    return start + left, start + len(piece.rstrip())


def split_passages(text: str) -> list[tuple[int, int]]:
    """Character spans of the blank-line-separated paragraphs of `text` (whitespace trimmed, empty ones dropped)."""
    bounds, start = [], 0
    for match in _BLANK_LINE.finditer(text):
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(text)))
    return [span for s, e in bounds if (span := _stripped(text, s, e))]


def join_documents(documents) -> tuple[str, list[tuple[int, int]]]:
    """The prompt made of `documents` (blank lines between them) and each document's span in it."""
    if isinstance(documents, str):
        raise UserError("documents: a list of texts, not one string")
    texts = [d for d in documents if d and d.strip()]
    spans, at = [], 0
    for text in texts:
        spans.append(_stripped(text, 0, len(text)))
        spans[-1] = (spans[-1][0] + at, spans[-1][1] + at)
        at += len(text) + len(PASSAGE_JOIN)
    return PASSAGE_JOIN.join(texts), spans


def unit_passages(units: selection.Units, source: str, spans: list[tuple[int, int]]) -> list[int]:
    """Per word: the passage holding its first visible character (-1: none, e.g. the appended question)."""
    starts = [s for s, _ in spans]
    owner = []
    for s, e in units.spans:
        piece = source[s:e]
        at = s + len(piece) - len(piece.lstrip())
        p = bisect.bisect_right(starts, at) - 1
        owner.append(p if p >= 0 and at < spans[p][1] else -1)
    return owner


def contrast(token_scores: torch.Tensor) -> torch.Tensor:
    """Each token's score over the mean score of the CONTRAST_WINDOW tokens around it (the first SINK_TOKENS set
    to the median of the rest first; scores shifted to start at 0, as attention masses already do)."""
    x = token_scores.float().flatten().clone()
    x -= x.min()
    if x.numel() > SINK_TOKENS:
        x[:SINK_TOKENS] = x[SINK_TOKENS:].median()
    pool = torch.nn.AvgPool1d(CONTRAST_WINDOW, stride=1, padding=CONTRAST_WINDOW // 2, count_include_pad=False)
    local = pool(x[None, None])[0, 0, : x.numel()]
    return x / local.clamp_min(torch.finfo(torch.float32).tiny)


def passage_scores(token_scores: torch.Tensor, units: selection.Units, owner: list[int], n: int) -> list[float]:
    """Mean of each passage's PASSAGE_TOP best contrast scores, its tokens in the sink left out unless it has no
    other (-inf for a passage with no token of its own)."""
    values = contrast(token_scores).tolist()
    per: list[list[float]] = [[] for _ in range(n)]
    sink: list[list[float]] = [[] for _ in range(n)]
    for t, u in enumerate(units.token_unit):
        if u >= 0 and owner[u] >= 0:
            (per if t >= SINK_TOKENS else sink)[owner[u]].append(values[t])
    best = [sorted(v or s, reverse=True)[:PASSAGE_TOP] for v, s in zip(per, sink)]
    return [sum(v) / len(v) if v else float("-inf") for v in best]


def rank(scores: list[float]) -> list[int]:
    """Passage indices, best score first (ties: the earlier passage first)."""
    return sorted(range(len(scores)), key=lambda p: (-scores[p], p))


def keep_passages(ranked: list[int], cost: list[int], forced: list[bool], owner: list[int], k: int) -> set[int]:
    """Passages in rank order until their unprotected tokens cover the budget left by the protected words
    plus SLACK_TOKENS (the one crossing it included)."""
    free = k - sum(c for c, f in zip(cost, forced) if f)
    open_cost = [0] * len(ranked)
    for u, p in enumerate(owner):
        if p >= 0 and not forced[u]:
            open_cost[p] += cost[u]
    kept, covered = set(), 0
    for p in ranked:
        if covered >= free + SLACK_TOKENS:
            break
        kept.add(p)
        covered += open_cost[p]
    return kept


@dataclass(frozen=True)
class PassageSelection:
    kept_units: list[int]  # ascending, before `Units.with_attached`
    order: list[int]  # passages best first
    owner: list[int]  # per word: its passage (-1: none)


def select(units: selection.Units, source: str, spans: list[tuple[int, int]], token_scores: torch.Tensor,
           scores: list[float], cost: list[int], forced: list[bool], k: int) -> PassageSelection:
    """Rank the passages, keep the best within the budget, then select words inside them as the token path
    does (at most `k` tokens, filled up to the last word that fits; protected words always)."""
    owner = unit_passages(units, source, spans)
    ranked = rank(passage_scores(token_scores, units, owner, len(spans)))
    kept = keep_passages(ranked, cost, forced, owner, k)
    eligible = [u for u in range(len(units.spans)) if forced[u] or owner[u] in kept]
    chosen = selection.select_units([scores[u] for u in eligible], [cost[u] for u in eligible],
                                    [forced[u] for u in eligible], k)
    return PassageSelection([eligible[i] for i in chosen], ranked, owner)


def reordered_context(source: str, units: selection.Units, kept: list[int], owner: list[int],
                      order: list[int]) -> str:
    """The kept words of each passage in original order, passages best first, blank lines between them."""
    words: dict[int, list[int]] = {}
    for u in kept:
        if owner[u] >= 0:
            words.setdefault(owner[u], []).append(u)
    texts = ("".join(source[slice(*units.spans[u])] for u in words[p]).strip() for p in order if p in words)
    return PASSAGE_JOIN.join(t for t in texts if t)
