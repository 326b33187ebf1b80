"""The evaluator layer's attention rows for the last N_o queries only: what EHPC reads, without the rest.

The stock module computes all n query rows, an n x n weight matrix per head, values and the output
projection; EHPC (arXiv 2501.12959) uses the softmax rows of a few heads for the last N_o queries.
Here queries are projected for those N_o positions, keys for all, with the module's own projections,
QK-norm and RoPE function (the adapter says which apply), the stock scaling and causal / sliding-window
masking; values, o_proj and the MLP are never computed. Memory is O(heads x N_o x n).
"""

import torch
from torch import nn


def _heads(states: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[1, n, heads * head_dim] -> [1, heads, n, head_dim]."""
    return states.view(*states.shape[:2], -1, head_dim).transpose(1, 2)


def observation_rows(adapter, config, index: int, attention: nn.Module, hidden: torch.Tensor,
                     position_embeddings: tuple[torch.Tensor, torch.Tensor], heads: torch.Tensor,
                     n_o: int) -> torch.Tensor:
    """Softmax rows of query heads `heads` of layer `index` for the last N_o positions: [len(heads), N_o', n].

    `hidden` is the layer's attention input (after any pre-norm); N_o' = min(N_o, n).
    """
    # negative slices, not min(n_o, n): the ONNX export traces this with a symbolic n
    head_dim = attention.head_dim
    queries = _heads(attention.q_proj(hidden[:, -n_o:]), head_dim)
    keys = _heads(attention.k_proj(hidden), head_dim)
    q_norm, k_norm = adapter.query_norm(attention), adapter.key_norm(attention)
    if q_norm is not None:
        queries, keys = q_norm(queries), k_norm(keys)
    if adapter.rotary_applies(config, index):
        rotate = adapter.rotary_function(attention)
        cos, sin = position_embeddings
        queries, _ = rotate(queries, queries, cos[:, -n_o:], sin[:, -n_o:])
        _, keys = rotate(keys, keys, cos, sin)
    groups = queries.shape[1] // keys.shape[1]
    queries = queries.index_select(1, heads)
    keys = keys.index_select(1, torch.div(heads, groups, rounding_mode="floor"))  # repeat_kv, for these heads
    logits = torch.matmul(queries, keys.transpose(2, 3)) * attention.scaling
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    query_pos, key_pos = positions[-n_o:, None], positions[None, :]
    hidden_keys = key_pos > query_pos
    window = adapter.sliding_window(config, index)
    if window is not None:
        hidden_keys |= key_pos <= query_pos - window
    logits = logits.masked_fill(hidden_keys, float("-inf"))
    weights = nn.functional.softmax(logits, dim=-1, dtype=torch.float32).to(queries.dtype)  # as the stock eager
    return weights[0]
