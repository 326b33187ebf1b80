"""Calibration token windows from the local real-text corpus (never the evaluation split)."""

import random

import torch
from pydantic import BaseModel, ConfigDict, Field

from compressor.data.corpus import load_corpus


class CalibrationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: str = "calibration"
    samples: int = Field(32, gt=0)
    seq_len: int = Field(256, gt=1)
    seed: int = 0


def calibration_windows(tokenizer, spec: CalibrationSpec) -> list[torch.Tensor]:
    """`spec.samples` windows of exactly `spec.seq_len` token ids (shape [1, seq_len]), seeded."""
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
