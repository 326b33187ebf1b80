"""Calibration token windows from the local real-text corpora (never an evaluation split's text).

`corpus: en` without the chat template keeps the original windows: each document cut into `seq_len` pieces
(shorter documents skipped). `ko`, `mixed` or `chat_template: true` pack the documents instead (shuffled with
the seed, joined by blank lines): Korean articles and templated turns are mostly shorter than a window.
With `chat_template`, each document is rendered as a user turn through the model's chat template first, so
the statistics come from prompts shaped like the ones the server sends.
"""

import random

import torch
from pydantic import Field, field_validator

from compressor.core.errors import UserError
from compressor.core.validation import MAX_COUNT, MAX_TOKENS, Strict
from compressor.data.corpus import SPLITS, Corpus, load_corpus


class CalibrationSpec(Strict):
    split: str = "calibration"
    samples: int = Field(32, gt=0, le=MAX_COUNT)
    seq_len: int = Field(256, gt=1, le=MAX_TOKENS)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    corpus: Corpus = Field("en", description="en (CPython docstrings), ko (Korean statutes and bills) or mixed")
    chat_template: bool = Field(False, description="render each document as a user turn of the model's chat template")

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        if value not in SPLITS:
            raise ValueError(f"unknown corpus split {value!r} (known: {', '.join(SPLITS)})")
        return value

    @property
    def packed(self) -> bool:
        return self.corpus != "en" or self.chat_template


def as_chat_turns(tokenizer, texts: list[str]) -> list[str]:
    """Each text as a one-message chat (role user) through the tokenizer's template, generation prompt added."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("calibration.chat_template: the model's tokenizer has no chat template")
    return [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                          add_generation_prompt=True) for text in texts]


def packed_windows(tokenizer, texts: list[str], samples: int, seq_len: int, seed: int) -> list[torch.Tensor]:
    """Shuffle `texts` (seeded), join them with blank lines, cut `samples` windows of `seq_len` token ids."""
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text + "\n\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= samples * seq_len:
            break
    windows = [torch.tensor([ids[i:i + seq_len]]) for i in range(0, len(ids) - seq_len + 1, seq_len)][:samples]
    if not windows:
        raise ValueError(f"the calibration documents hold fewer than {seq_len} tokens")
    return windows


def calibration_texts(tokenizer, spec: CalibrationSpec, texts: list[str] | None = None) -> list[str]:
    """The documents of `spec` (or `texts`), through the chat template when it asks."""
    texts = load_corpus(spec.split, corpus=spec.corpus) if texts is None else texts
    return as_chat_turns(tokenizer, texts) if spec.chat_template else texts


def calibration_windows(tokenizer, spec: CalibrationSpec) -> list[torch.Tensor]:
    """`spec.samples` windows of exactly `spec.seq_len` token ids (shape [1, seq_len]), seeded."""
    if spec.packed:
        return packed_windows(tokenizer, calibration_texts(tokenizer, spec), spec.samples, spec.seq_len, spec.seed)
    docs = load_corpus(spec.split)
    random.Random(spec.seed).shuffle(docs)
    windows: list[torch.Tensor] = []
    for doc in docs:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - spec.seq_len + 1, spec.seq_len):
            windows.append(torch.tensor([ids[start : start + spec.seq_len]]))
            if len(windows) == spec.samples:
                return windows
    if not windows:
        raise ValueError(f"calibration split {spec.split!r} has no document of {spec.seq_len} tokens")
    return windows
