#!/usr/bin/env python3
"""Build the offline Korean evaluation data (eval/data/ko*, used by eval/tasks/ko_*.yaml).

    python scripts/make_korean_data.py [--seed 0] [--wheel konlpy-0.6.0-py2.py3-none-any.whl]

The judge scores compressed models on Korean the way the LG Aimers server does (KMMLU-Pro /
KMMLU-Redux multiple choice, Ko-LongRAG long-context QA), but offline, from real public text the
project did not write: the Constitution of the Republic of Korea and ten National Assembly bills
shipped in the konlpy 0.6.0 wheel (``konlpy/data/corpus/kolaw/constitution.txt`` and
``konlpy/data/corpus/kobill/*.txt``). Statutes and bills are public works, not protected under
Article 7 of the Korean Copyright Act. The wheel is read as a zip file (nothing installed, no Java).

Writes (see eval/data/ko/README.md):

- ``eval/data/ko/{calibration,eval,long}.jsonl``: cleaned documents ``{"text", "source"}``
  (consecutive articles of the Constitution or paragraphs of one bill) in three splits that
  never share a sentence: documents that share one always land in the same split.
- ``eval/data/ko_particles.jsonl``: 받침 (final consonant) minimal pairs for 이/가, 을/를, 은/는,
  과/와, (으)로 and 이에요/예요, nouns mined from the corpus.
- ``eval/data/ko_mc.jsonl``: KMMLU-style 4-option cloze items from sentences of the eval split.
- ``eval/data/ko_longrag.jsonl``: Ko-LongRAG-like QA over numbered passages of the long split
  with one planted fact and same-template distractor facts, 1,000-8,000 SmolLM2 tokens.

Every random choice comes from ``random.Random(seed + k)`` (one stream per output); files are
read in sorted order and no set or dict is iterated unordered, so two runs give byte-identical
files. The output depends only on the wheel's text, the seed, this script and the tokenizer
(``--tokenizer``, a tokenizer.json, which measures the long-context lengths).

The pieces live in scripts/korean_data/: hangul (받침 rules), corpus (source text and splits), nouns,
particles, mc and longrag (one output each); this file reads the arguments and writes the files.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from korean_data.corpus import documents, corpus_units, find_wheel, make_splits, read_sources
from korean_data.hangul import final_class
from korean_data.longrag import make_longrag
from korean_data.mc import make_mc
from korean_data.nouns import mine_nouns
from korean_data.particles import make_particles

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "eval" / "data"

PAIRS_PER_PHENOMENON = 80
MC_ITEMS = 360                        # the eval split allows ~430 with <= 3 blanks per sentence
LONGRAG_ITEMS = 150


def rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=None,
                    help="konlpy 0.6.0 wheel (default: $KONLPY_WHEEL, /tmp/konlpy/*.whl, else pip download)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT), help="output folder (default eval/data)")
    ap.add_argument("--tokenizer", default=None,
                    help="tokenizer.json that measures ko_longrag contexts (default: the bundled SmolLM2-135M's)")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    if args.tokenizer:
        tok_path = Path(args.tokenizer)
    else:  # the bundled model's tokenizer (built from its GGUF once, cached under $COMPRESSOR_HOME)
        from compressor.models.builtin import materialize_builtin

        tok_path = materialize_builtin("smollm2-135m") / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tok_path))
    n_tok = lambda s: len(tokenizer.encode(s, add_special_tokens=False).ids)  # noqa: E731

    wheel = find_wheel(args.wheel)
    sources = read_sources(wheel)
    for source, text, digest in sources:
        print(f"read {source}: {len(text)} characters, sha256 {digest[:16]}")
    out = Path(args.out).resolve()

    docs = documents(corpus_units(sources))
    splits = make_splits(docs, random.Random(args.seed))
    for name in ("calibration", "eval", "long"):
        rows = splits[name]
        path = out / "ko" / f"{name}.jsonl"
        write_jsonl(path, rows)
        print(f"wrote {rel(path)}: {len(rows)} documents, {sum(len(r['text']) for r in rows)} characters, "
              f"{sum(len(r['text'].encode()) for r in rows)} bytes, {sum(n_tok(r['text']) for r in rows)} tokens")

    corpus_text = "\n".join(d["text"] for d in docs)
    nouns = mine_nouns([d["text"] for d in docs])
    classes = Counter(final_class(n) for n in nouns)
    print(f"mined {len(nouns)} nouns (vowel-final {classes['V']}, ㄹ-final {classes['L']}, "
          f"other consonant {classes['C']})")

    pairs = make_particles(random.Random(args.seed + 1), sorted(nouns), PAIRS_PER_PHENOMENON)
    path = out / "ko_particles.jsonl"
    write_jsonl(path, pairs)
    counts = Counter(p["phenomenon"] for p in pairs)
    print(f"wrote {rel(path)}: {len(pairs)} pairs, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    mc = make_mc(random.Random(args.seed + 2), splits["eval"], nouns, corpus_text, MC_ITEMS)
    path = out / "ko_mc.jsonl"
    write_jsonl(path, mc)
    letters = Counter(it["answer"] for it in mc)
    print(f"wrote {rel(path)}: {len(mc)} items, answers " + ", ".join(f"{k} {v}" for k, v in sorted(letters.items())))

    rag = make_longrag(random.Random(args.seed + 3), splits["long"], n_tok, LONGRAG_ITEMS)
    path = out / "ko_longrag.jsonl"
    write_jsonl(path, rag)
    toks = sorted(it["tokens"] for it in rag)
    kinds = Counter(it["template"] for it in rag)
    print(f"wrote {rel(path)}: {len(rag)} items ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
          f"context tokens min {toks[0]} median {toks[len(toks) // 2]} max {toks[-1]}, "
          f"passages {min(it['passages'] for it in rag)}-{max(it['passages'] for it in rag)}")


if __name__ == "__main__":
    main()
