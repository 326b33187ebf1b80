"""Per-layer importance on calibration text.

- angular distance between the inputs of layer l and layer l+n at the last token
  (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers", arXiv 2403.17887);
- Block Influence BI_l = 1 - E[cos(x_l, x_{l+1})] over all tokens (Men et al. 2024, ShortGPT, arXiv 2403.03853).
"""

import math

import torch

from compressor.models.adapters import ArchitectureAdapter
from compressor.models.offload import input_device


def layer_states(model, adapter: ArchitectureAdapter, windows: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """For each window: [x_0 .. x_L], x_l the input of layer l and x_L the last layer's output (pre-norm)."""
    return list(iter_layer_states(model, adapter, windows))


@torch.inference_mode()
def iter_layer_states(model, adapter: ArchitectureAdapter, windows: list[torch.Tensor]):
    """`layer_states` one window at a time (a scorer that consumes them holds one window's states, not all)."""
    layers = adapter.decoder_layers(model)
    device = input_device(model)  # offloaded (model.device_map): accelerate's main device
    captured: list[torch.Tensor] = []

    def grab_input(module, args, kwargs):
        captured.append((args[0] if args else kwargs["hidden_states"]).float().cpu())

    def grab_output(module, args, output):
        captured.append((output[0] if isinstance(output, tuple) else output).float().cpu())

    hooks = [layer.register_forward_pre_hook(grab_input, with_kwargs=True) for layer in layers]
    hooks.append(layers[-1].register_forward_hook(grab_output))
    try:
        for window in windows:
            captured.clear()
            model(input_ids=window.to(device), use_cache=False)
            yield [x[0] for x in captured]  # drop the batch dim: [seq, hidden]
    finally:
        for hook in hooks:
            hook.remove()


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1.0, 1.0)


def _column_means(rows: list[list[float]]) -> list[float]:
    return [sum(column) / len(rows) for column in zip(*rows)]


def angular_block_distances(states, n: int) -> list[float]:
    """d(x_l, x_{l+n}) = arccos(cos)/pi at the last token, averaged over windows, for l = 0..L-n; `states` any
    iterable of one window's states (each consumed once)."""
    return _column_means([[math.acos(_cos(s[l][-1], s[l + n][-1]).item()) / math.pi for l in range(len(s) - n)]
                          for s in states])


def block_influence(states) -> list[float]:
    """BI_l = 1 - mean over tokens and windows of cos(x_l, x_{l+1}); `states` as for angular_block_distances."""
    return [1.0 - mean for mean in _column_means([[_cos(s[l], s[l + 1]).mean().item() for l in range(len(s) - 1)]
                                                   for s in states])]
