"""Tensor surgery: keep chosen rows / columns of linear, embedding and norm weights, in place."""

import torch
from torch import nn

from compressor.models.offload import offload_aware


def _index(indices, device) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long, device=device)


@offload_aware  # an offloaded module is onloaded for the edit, the result written back
@torch.no_grad()
def slice_linear(linear: nn.Linear, out_keep=None, in_keep=None) -> None:
    """Keep output features `out_keep` (rows, and bias) and input features `in_keep` (columns)."""
    weight = linear.weight
    if out_keep is not None:
        index = _index(out_keep, weight.device)
        weight = weight.index_select(0, index)
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.index_select(0, index).clone(),
                                       requires_grad=linear.bias.requires_grad)
        linear.out_features = len(index)
    if in_keep is not None:
        weight = weight.index_select(1, _index(in_keep, weight.device))
        linear.in_features = weight.shape[1]
    linear.weight = nn.Parameter(weight.clone(), requires_grad=linear.weight.requires_grad)


@offload_aware
@torch.no_grad()
def slice_embedding(embedding: nn.Embedding, keep) -> None:
    weight = embedding.weight.index_select(1, _index(keep, embedding.weight.device))
    embedding.weight = nn.Parameter(weight.clone(), requires_grad=embedding.weight.requires_grad)
    embedding.embedding_dim = weight.shape[1]


@offload_aware
@torch.no_grad()
def slice_norm(norm: nn.Module, keep, scale: float = 1.0) -> None:
    """Keep channels `keep` of an RMSNorm/LayerNorm weight (and bias), weight multiplied by `scale`."""
    index = _index(keep, norm.weight.device)
    norm.weight = nn.Parameter(norm.weight.index_select(0, index) * scale, requires_grad=norm.weight.requires_grad)
    if getattr(norm, "bias", None) is not None:
        norm.bias = nn.Parameter(norm.bias.index_select(0, index).clone(), requires_grad=norm.bias.requires_grad)
    if hasattr(norm, "normalized_shape"):
        norm.normalized_shape = (len(index),)


def head_channels(heads, head_dim: int) -> list[int]:
    """Feature indices of whole heads (head h owns features h*head_dim .. (h+1)*head_dim - 1)."""
    return [h * head_dim + d for h in heads for d in range(head_dim)]
