"""The bundled real-text corpus (CPython stdlib docstrings, see eval/data/corpus/README.md), packaged."""

import json
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.resources import eval_dir

SPLITS = ("calibration", "eval", "long")


def corpus_dir() -> Path:
    return eval_dir() / "data" / "corpus"


def corpus_path(split: str) -> Path:
    """Absolute path of a split's .jsonl file; UserError for an unknown split or a missing file."""
    if split not in SPLITS:
        raise UserError(f"unknown corpus split {split!r}; expected one of {', '.join(SPLITS)}")
    path = corpus_dir() / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: corpus split missing (regenerate with `python scripts/make_corpus.py`)")
    return path


def load_corpus(split: str, limit: int | None = None) -> list[str]:
    """The texts of `split` in file order; the first `limit` of them if given."""
    if limit is not None and limit < 0:
        raise UserError(f"corpus limit must be >= 0, got {limit}")
    docs = []
    with open(corpus_path(split), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line)["text"])
            if limit is not None and len(docs) >= limit:
                break
    return docs


def leading_token_ids(tokenizer, split: str, tokens: int) -> list[int]:
    """The first `tokens` ids of the split's documents joined by blank lines (no special tokens); fewer when
    the split is shorter (the caller says what it needed)."""
    ids: list[int] = []
    for doc in load_corpus(split):
        ids += tokenizer(doc + "\n\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= tokens:
            break
    return ids[:tokens]
