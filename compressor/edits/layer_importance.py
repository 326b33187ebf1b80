"""Per-layer importance on calibration text.

- angular distance between the inputs of layer l and layer l+n at the last token
  (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers", arXiv 2403.17887);
- Block Influence BI_l = 1 - E[cos(x_l, x_{l+1})] over all tokens (Men et al. 2024, ShortGPT, arXiv 2403.03853).
"""

import math

import torch

from compressor.models.adapters import ArchitectureAdapter


@torch.inference_mode()
def layer_states(model, adapter: ArchitectureAdapter, windows: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """For each window: [x_0 .. x_L], x_l the input of layer l and x_L the last layer's output (pre-norm)."""
    layers = adapter.decoder_layers(model)
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def grab_input(module, args, kwargs):
        captured.append((args[0] if args else kwargs["hidden_states"]).float().cpu())

    def grab_output(module, args, output):
        captured.append((output[0] if isinstance(output, tuple) else output).float().cpu())

    hooks = [layer.register_forward_pre_hook(grab_input, with_kwargs=True) for layer in layers]
    hooks.append(layers[-1].register_forward_hook(grab_output))
    states = []
    try:
        for window in windows:
            captured.clear()
            model(input_ids=window.to(device), use_cache=False)
            states.append([x[0] for x in captured])  # drop the batch dim: [seq, hidden]
    finally:
        for hook in hooks:
            hook.remove()
    return states


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1.0, 1.0)


def angular_block_distances(states, n: int) -> list[float]:
    """d(x_l, x_{l+n}) = arccos(cos)/pi at the last token, averaged over windows, for l = 0..L-n."""
    num_layers = len(states[0]) - 1
    return [
        sum(math.acos(_cos(s[l][-1], s[l + n][-1]).item()) / math.pi for s in states) / len(states)
        for l in range(num_layers - n + 1)
    ]


def block_influence(states) -> list[float]:
    """BI_l = 1 - mean over tokens and windows of cos(x_l, x_{l+1})."""
    num_layers = len(states[0]) - 1
    return [1.0 - sum(_cos(s[l], s[l + 1]).mean().item() for s in states) / len(states) for l in range(num_layers)]
