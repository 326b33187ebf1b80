"""Discovery probes (EHPC, arXiv 2501.12959): real-text filler, one needle sentence at a depth, the question last."""

import random
from dataclasses import dataclass

from compressor.core.errors import UserError
from compressor.data.corpus import load_corpus

# The needle of the paper's pilot experiment (the needle-in-a-haystack test it builds on).
NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
QUESTION = "What is the best thing to do in San Francisco?"
DEPTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FILLER_SPLIT = "long"  # eval/data/corpus/long.jsonl


@dataclass(frozen=True)
class Probe:
    text: str
    needle_span: tuple[int, int]  # characters of the needle in `text`
    depth: float


def paragraphs(split: str = FILLER_SPLIT, corpus: str = "en") -> list[str]:
    return [p.strip() for doc in load_corpus(split, corpus=corpus) for p in doc.split("\n\n") if p.strip()]


def filler_file(corpus: str = "en") -> str:
    """Where the filler comes from, as recorded in prompt_compressor.json."""
    return f"eval/data/{'corpus' if corpus == 'en' else corpus}/{FILLER_SPLIT}.jsonl"


def build_probes(tokenizer, tokens: int, needle: str = NEEDLE, question: str = QUESTION,
                 depths=DEPTHS, seed: int = 0, split: str = FILLER_SPLIT, corpus: str = "en") -> list[Probe]:
    """One probe per depth of about `tokens` tokens: filler paragraphs (a seeded start in the corpus), the
    needle at the paragraph boundary nearest to `depth`, the question after the filler."""
    paras = paragraphs(split, corpus)
    if not paras:
        raise ValueError(f"corpus split {split!r} is empty")
    n_tok = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    budget = tokens - n_tok(needle) - n_tok(question) - 6
    if budget < 16:
        raise UserError(f"probe_tokens: a probe of {tokens} tokens leaves no room for filler around the needle and "
                        f"question (use more probe tokens)")
    rng = random.Random(seed)
    probes = []
    for depth in depths:
        start = rng.randrange(len(paras))
        chosen, used = [], 0
        for j in range(len(paras) * 4):
            para = paras[(start + j) % len(paras)]
            cost = n_tok(para) + 1
            if used + cost > budget:
                if not chosen:  # a paragraph longer than the budget: cut it by words
                    words = para.split(" ")
                    while words and n_tok(" ".join(words)) > budget:
                        words = words[: len(words) * 3 // 4]
                    chosen.append(" ".join(words))
                break
            chosen.append(para)
            used += cost
        slot = max(1, min(len(chosen) - 1, round(depth * len(chosen)))) if len(chosen) > 1 else 1
        before, after = "\n\n".join(chosen[:slot]), "\n\n".join(chosen[slot:])
        head = before + "\n\n"
        text = head + needle + "\n\n" + after + ("\n\n" if after else "") + question
        probes.append(Probe(text=text, needle_span=(len(head), len(head) + len(needle)), depth=depth))
    return probes
