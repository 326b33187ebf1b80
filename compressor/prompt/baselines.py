"""Comparison baselines behind the EHPC interface: keep random words, or keep both ends of the prompt.

They share `TokenScoringCompressor`'s selection (same budget, same protected question), so only the
token scores differ from EHPC (arXiv 2501.12959).
"""

from pathlib import Path

import torch

from compressor.prompt.compressor import TokenScoringCompressor
from compressor.prompt.spec import spec_folder


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec_folder(Path(folder)))


class RandomKeep(TokenScoringCompressor):
    """Uniform random token scores (seeded per prompt length, so runs repeat)."""

    method = "random"

    def __init__(self, tokenizer, seed: int = 0):
        super().__init__(tokenizer)
        self.seed = seed

    @classmethod
    def from_pretrained(cls, folder, seed: int = 0) -> "RandomKeep":
        return cls(_tokenizer(folder), seed)

    def token_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + input_ids.shape[1])
        return torch.rand(input_ids.shape[1], generator=generator)


class KeepEnds(TokenScoringCompressor):
    """Keep the beginning and the end: a token's score falls with its distance from the nearer end."""

    method = "ends"

    @classmethod
    def from_pretrained(cls, folder) -> "KeepEnds":
        return cls(_tokenizer(folder))

    def token_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        position = torch.arange(n, dtype=torch.float32)
        return -torch.minimum(position, n - 1 - position)
