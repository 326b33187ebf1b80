"""Synthetic long-context tasks for the EHPC benchmark (RULER-style), seeded and offline.

Three kinds, each a needle hidden in real-text filler (eval/data/corpus/long.jsonl, CPython
docstrings) at a depth in 0.1..0.9 of a 1k-4k-token context:
- single: one "special magic number" needle (RULER niah_single);
- multikey: four needles with different keys, the question asks for one (RULER niah_multikey);
- passkey: the pass key sentence (the classic passkey retrieval test).

`language="ko"` builds the same three kinds in Korean: filler from eval/data/ko/long.jsonl (the
Constitution and National Assembly bills; their articles and clauses are single lines, so a line is a
paragraph here), Korean needles and questions; single asks a number (특별한 마법의 숫자), multikey a word
(a city, 특별한 마법의 도시), passkey a number (비밀번호). Keys and cities occur nowhere in the Korean corpus.

The benchmark (benchmarks/ehpc.py) calls `make_tasks` at run time, so no data is committed; the
same seed and tokenizer always give the same items. Run this script to look at them:

    python scripts/make_ehpc_tasks.py --per-kind 2 --out /tmp/ehpc_tasks.jsonl
    python scripts/make_ehpc_tasks.py --per-kind 2 --language ko --out /tmp/ehpc_tasks_ko.jsonl
"""

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = ("single", "multikey", "passkey")
LANGUAGES = ("en", "ko")
KEYS = ["falcon", "copper", "meadow", "lantern", "harbor", "violet", "thunder", "marble", "pepper", "canyon",
        "orchid", "walnut", "glacier", "saddle", "comet", "ginger", "velvet", "anchor", "maple", "rocket"]
KEYS_KO = ["호랑이", "고래", "독수리", "나비", "거북이", "기린", "펭귄", "여우", "다람쥐", "부엉이", "사슴", "코끼리",
           "두루미", "고슴도치", "수달", "너구리", "까치", "참새", "앵무새", "토끼"]
CITIES_KO = ["부산", "대구", "인천", "광주", "대전", "울산", "전주", "춘천", "강릉", "경주", "목포", "여수", "포항", "안동",
             "속초", "통영"]
N_MULTIKEY = 4


def _filler_paragraphs(language: str = "en") -> list[str]:
    sys.path.insert(0, str(REPO))
    from compressor.data.corpus import load_corpus
    from compressor.prompt.probes import paragraphs

    if language == "en":
        return paragraphs("long")
    # a Korean document (~1,400 SmolLM2 tokens) has no blank lines: its lines are the paragraphs
    return [line.strip() for doc in load_corpus("long", corpus="ko") for line in doc.split("\n") if line.strip()]


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


def _needles_ko(kind: str, rng: random.Random) -> tuple[list[str], str, str, str]:
    """Korean needles: numbers for single and passkey, words (cities) for multikey. The answer prefix is the
    needle's own opening, which the question does not repeat (its particle differs: 가/를, not 는)."""
    if kind == "passkey":
        key = str(rng.randint(10000, 99999))
        return ([f"비밀번호는 {key}입니다. 꼭 기억하세요. {key}, 이것이 비밀번호입니다."], "본문의 비밀번호가 무엇입니까?", key,
                "비밀번호는")
    words = rng.sample(KEYS_KO, N_MULTIKEY if kind == "multikey" else 1)
    if kind == "multikey":
        values = rng.sample(CITIES_KO, len(words))
        needles = [f"{w}의 특별한 마법의 도시는 {v}입니다." for w, v in zip(words, values)]
        return (needles, f"본문에 나온 {words[0]}의 특별한 마법의 도시를 알려 주세요.", values[0],
                f"{words[0]}의 특별한 마법의 도시는")
    value = str(rng.randint(1_000_000, 9_999_999))
    return ([f"{words[0]}의 특별한 마법의 숫자는 {value}입니다."],
            f"본문에 나온 {words[0]}의 특별한 마법의 숫자를 알려 주세요.", value, f"{words[0]}의 특별한 마법의 숫자는")


def make_tasks(tokenizer, per_kind: int = 10, min_tokens: int = 1024, max_tokens: int = 4096, seed: int = 0,
               kinds=KINDS, language: str = "en") -> list[dict]:
    """Items {id, kind, language, context, question, answer, answer_prefix, n_tokens, depth}; ids of Korean
    items start with "ko-"."""
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r}: one of {', '.join(LANGUAGES)}")
    needles_for = _needles if language == "en" else _needles_ko
    rng = random.Random(seed)
    paras = _filler_paragraphs(language)
    n_tok = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    para_tokens = [n_tok(p) + 1 for p in paras]
    items = []
    for kind in kinds:
        targets = [min_tokens + (max_tokens - min_tokens) * (i + rng.random()) / per_kind for i in range(per_kind)]
        depths = [0.1 + 0.8 * (i + rng.random()) / per_kind for i in range(per_kind)]
        rng.shuffle(depths)
        for i in range(per_kind):
            needles, question, answer, prefix = needles_for(kind, rng)
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
            items.append({"id": f"{'' if language == 'en' else language + '-'}{kind}-{i}", "kind": kind,
                          "language": language, "context": context, "question": question,
                          "answer": answer, "answer_prefix": prefix, "n_tokens": n,
                          "depth": round(n_tok(before) / n, 3)})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=10)
    parser.add_argument("--min-tokens", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--language", choices=(*LANGUAGES, "both"), default="en")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the bundled SmolLM2-135M)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer

    if args.tokenizer is None:
        from compressor.models.builtin import materialize_builtin

        args.tokenizer = materialize_builtin("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    languages = LANGUAGES if args.language == "both" else (args.language,)
    items = [item for language in languages
             for item in make_tasks(tokenizer, args.per_kind, args.min_tokens, args.max_tokens, args.seed,
                                    language=language)]
    with open(args.out, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} items to {args.out}")


if __name__ == "__main__":
    main()
