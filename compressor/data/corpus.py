"""The bundled real-text corpora, packaged: English (CPython stdlib docstrings, eval/data/corpus/README.md) and
Korean (the Constitution and National Assembly bills, eval/data/ko/README.md), each in calibration / eval / long
splits that never overlap. `mixed` interleaves the two, document by document."""

import json
from pathlib import Path
from typing import Literal

from compressor.core.errors import UserError
from compressor.core.resources import eval_dir

SPLITS = ("calibration", "eval", "long")
Corpus = Literal["en", "ko", "mixed"]
CORPORA = ("en", "ko", "mixed")
_FOLDERS = {"en": "corpus", "ko": "ko"}
_MAKERS = {"en": "scripts/make_corpus.py", "ko": "scripts/make_korean_data.py"}


def corpus_dir(corpus: str = "en") -> Path:
    return eval_dir() / "data" / _FOLDERS[corpus]


def corpus_path(split: str, corpus: str = "en") -> Path:
    """Absolute path of a split's .jsonl file; UserError for an unknown split or corpus, or a missing file."""
    if split not in SPLITS:
        raise UserError(f"unknown corpus split {split!r}; expected one of {', '.join(SPLITS)}")
    if corpus not in _FOLDERS:
        raise UserError(f"unknown corpus {corpus!r}; expected one of {', '.join(_FOLDERS)}")
    path = corpus_dir(corpus) / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: corpus split missing (regenerate with `python {_MAKERS[corpus]}`)")
    return path


def check_corpus(split: str, corpus: str = "en") -> None:
    """UserError unless every file `load_corpus(split, corpus=corpus)` reads is there."""
    for name in (("en", "ko") if corpus == "mixed" else (corpus,)):
        corpus_path(split, name)


def _read(path: Path, limit: int | None) -> list[str]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line)["text"])
            if limit is not None and len(docs) >= limit:
                break
    return docs


def load_corpus(split: str, limit: int | None = None, corpus: str = "en") -> list[str]:
    """The texts of `split` in file order (`mixed`: English and Korean alternating); the first `limit` if given."""
    if limit is not None and limit < 0:
        raise UserError(f"corpus limit must be >= 0, got {limit}")
    if corpus != "mixed":
        return _read(corpus_path(split, corpus), limit)
    english, korean = _read(corpus_path(split, "en"), None), _read(corpus_path(split, "ko"), None)
    mixed = [doc for pair in zip(english, korean) for doc in pair]
    rest = english[len(korean):] or korean[len(english):]
    return (mixed + rest)[:limit] if limit is not None else mixed + rest


def leading_token_ids(tokenizer, split: str, tokens: int, corpus: str = "en") -> list[int]:
    """The first `tokens` ids of the split's documents joined by blank lines (no special tokens); fewer when
    the split is shorter (the caller says what it needed)."""
    ids: list[int] = []
    for doc in load_corpus(split, corpus=corpus):
        ids += tokenizer(doc + "\n\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= tokens:
            break
    return ids[:tokens]
