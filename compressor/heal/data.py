"""Training and held-back token windows for healing, from a local corpus split (never an evaluation split).

Documents are shuffled (seeded) and split by document: the first ones, packed, give `holdout` windows
that training never sees; the rest are packed (EOS between documents) into training windows.
"""

import random

import torch

# corpus splits the evaluation reads (corpus_ppl and the latency prompt: eval; retrieval filler: long)
EVALUATION_SPLITS = ("eval", "long")


def _pack(tokenizer, docs: list[str], seq_len: int) -> torch.Tensor:
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for doc in docs:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + separator
    count = len(stream) // seq_len
    return torch.tensor(stream[: count * seq_len], dtype=torch.long).view(count, seq_len)


def train_and_holdout(tokenizer, docs: list[str], seq_len: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train [n, seq_len], holdout [holdout, seq_len]) token windows from disjoint documents."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    held: list[str] = []
    while docs and (not held or len(_pack(tokenizer, held, seq_len)) < holdout):
        held.append(docs.pop(0))
    held_windows = _pack(tokenizer, held, seq_len)[:holdout]
    train = _pack(tokenizer, docs, seq_len)
    if len(held_windows) < holdout or len(train) == 0:
        raise ValueError(f"the corpus has too little text for {holdout} held-back windows of {seq_len} tokens "
                         "plus training windows")
    return train, held_windows


class Batches:
    """Endless seeded batches of training windows: a new permutation each pass."""

    def __init__(self, windows: torch.Tensor, batch: int, seed: int):
        self.windows, self.batch = windows, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.passes = 0

    def next(self) -> torch.Tensor:
        if len(self.order) < self.batch:
            self.order += torch.randperm(len(self.windows), generator=self.generator).tolist()
            self.passes += 1
        picked, self.order = self.order[: self.batch], self.order[self.batch :]
        return self.windows[picked]
