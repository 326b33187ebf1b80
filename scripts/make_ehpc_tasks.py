"""Synthetic long-context tasks for the EHPC benchmark (RULER-style), seeded and offline.

Three kinds, each a needle hidden in real-text filler (eval/data/corpus/long.jsonl, CPython
docstrings) at a depth in 0.1..0.9 of a 1k-4k-token context:
- single: one "special magic number" needle (RULER niah_single);
- multikey: four needles with different keys, the question asks for one (RULER niah_multikey);
- passkey: the pass key sentence (the classic passkey retrieval test).

The benchmark (benchmarks/ehpc.py) calls `make_tasks` at run time, so no data is committed; the
same seed and tokenizer always give the same items. Run this script to look at them:

    python scripts/make_ehpc_tasks.py --per-kind 2 --out /tmp/ehpc_tasks.jsonl
"""

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = ("single", "multikey", "passkey")
KEYS = ["falcon", "copper", "meadow", "lantern", "harbor", "violet", "thunder", "marble", "pepper", "canyon",
        "orchid", "walnut", "glacier", "saddle", "comet", "ginger", "velvet", "anchor", "maple", "rocket"]
N_MULTIKEY = 4


def _filler_paragraphs() -> list[str]:
    sys.path.insert(0, str(REPO))
    from compressor.prompt.probes import paragraphs

    return paragraphs("long")


def _needles(kind: str, rng: random.Random) -> tuple[list[str], str, str, str]:
    """(needle sentences, the first being the asked one; question; answer; answer prefix)."""
    if kind == "passkey":
        key = str(rng.randint(10000, 99999))
        return ([f"The pass key is {key}. Remember it. {key} is the pass key."], "What is the pass key?", key,
                "The pass key is")
    words = rng.sample(KEYS, N_MULTIKEY if kind == "multikey" else 1)
    values = [str(rng.randint(1_000_000, 9_999_999)) for _ in words]
    needles = [f"One of the special magic numbers for {w} is: {v}." for w, v in zip(words, values)]
    return (needles, f"What is the special magic number for {words[0]} mentioned in the provided text?", values[0],
            f"The special magic number for {words[0]} mentioned in the provided text is")


def make_tasks(tokenizer, per_kind: int = 10, min_tokens: int = 1024, max_tokens: int = 4096, seed: int = 0,
               kinds=KINDS) -> list[dict]:
    rng = random.Random(seed)
    paras = _filler_paragraphs()
    n_tok = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    para_tokens = [n_tok(p) + 1 for p in paras]
    items = []
    for kind in kinds:
        targets = [min_tokens + (max_tokens - min_tokens) * (i + rng.random()) / per_kind for i in range(per_kind)]
        depths = [0.1 + 0.8 * (i + rng.random()) / per_kind for i in range(per_kind)]
        rng.shuffle(depths)
        for i in range(per_kind):
            needles, question, answer, prefix = _needles(kind, rng)
            budget = targets[i] - sum(n_tok(s) + 1 for s in needles)
            while True:
                start = rng.randrange(len(paras))
                chosen, used, j = [], 0, start
                while used + para_tokens[j % len(paras)] <= budget:
                    chosen.append(paras[j % len(paras)])
                    used += para_tokens[j % len(paras)]
                    j += 1
                if len(chosen) >= 4 and answer not in " ".join(chosen):
                    break
            # distractor needles at random boundaries, the asked-for needle nearest the target depth
            for sentence in needles[1:]:
                chosen.insert(rng.randrange(1, len(chosen)), sentence)
            slot = max(1, min(len(chosen) - 1, round(depths[i] * len(chosen))))
            chosen.insert(slot, needles[0])
            context = "\n\n".join(chosen)
            before = "\n\n".join(chosen[:slot])
            n = n_tok(context)
            items.append({"id": f"{kind}-{i}", "kind": kind, "context": context, "question": question,
                          "answer": answer, "answer_prefix": prefix, "n_tokens": n,
                          "depth": round(n_tok(before) / n, 3)})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=10)
    parser.add_argument("--min-tokens", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the bundled SmolLM2-135M)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer

    if args.tokenizer is None:
        from compressor.models.builtin import materialize_builtin

        args.tokenizer = materialize_builtin("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    items = make_tasks(tokenizer, args.per_kind, args.min_tokens, args.max_tokens, args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} items to {args.out}")


if __name__ == "__main__":
    main()
