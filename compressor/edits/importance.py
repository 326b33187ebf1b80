"""Importance of layers, attention heads, KV groups, MLP neurons and hidden channels on calibration text.

Width scores are Minitron's activation-based importance (Muralidharan et al. 2024, "Compact Language
Models via Pruning and Knowledge Distillation", arXiv 2407.14679, Sec. 2.2), with the aggregation the
paper found best: |activation| averaged over the sequence, then the L2 norm over the batch (here: over
calibration windows), as NVIDIA's ModelOpt implementation of it does:

- neuron i of an MLP: the aggregated |input of down_proj| (act(gate_proj x) · up_proj x), channel i;
- attention head h: the L2 norm over head_dim of the aggregated |attention output| (o_proj's input)
  in that head's channels; a KV group: the L2 norm over its query heads' channels;
- hidden channel c: the sum over every hidden-size norm inside the decoder layers of the aggregated
  |norm output| at channel c (Llama: the pre-norms; EXAONE-4: the post-norms).

Layer scores (per layer, on the same windows): Block Influence and the angular distance between the
inputs of layer l and l+1 (compressor.edits.layer_importance). Each norm's input energy per channel
(mean x²) is kept too: reduce_hidden uses it to rescale RMSNorm weights after removing channels.
"""

from dataclasses import dataclass, field

import torch

from compressor.edits import layer_importance
from compressor.models.adapters import ArchitectureAdapter
from compressor.models.offload import input_device

KINDS = ("layers", "heads", "neurons", "channels")


class L2OfMeanAbs:
    """Accumulates sum over batch of (mean over sequence of |x|)²; `result()` is its square root."""

    def __init__(self):
        self.total: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        x = x.reshape(-1, x.shape[-2], x.shape[-1])  # [batch, seq, channels]
        squares = x.abs().mean(dim=1).pow(2).sum(dim=0)
        self.total = squares if self.total is None else self.total + squares

    def result(self) -> torch.Tensor:
        return self.total.sqrt().cpu()


class MeanSquare:
    """Mean over every token of x² per channel."""

    def __init__(self):
        self.total, self.count = None, 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().float().reshape(-1, x.shape[-1])
        squares = x.pow(2).sum(dim=0)
        self.total = squares if self.total is None else self.total + squares
        self.count += x.shape[0]

    def result(self) -> torch.Tensor:
        return (self.total / self.count).cpu()


@dataclass
class Importance:
    windows: int
    tokens: int
    heads: torch.Tensor | None = None  # [layers, heads]
    kv_groups: torch.Tensor | None = None  # [layers, kv_heads]
    neurons: torch.Tensor | None = None  # [layers, intermediate_size]
    channels: torch.Tensor | None = None  # [hidden_size]
    channels_by_norm: torch.Tensor | None = None  # [norms inside layers, hidden_size]
    norm_names: list[str] = field(default_factory=list)
    norm_energy: dict[str, torch.Tensor] = field(default_factory=dict)  # every hidden norm's input, incl. final
    block_influence: list[float] | None = None
    angular_distance: list[float] | None = None

    def to_json(self, rounding: int = 6) -> dict:
        def listed(t):
            return None if t is None else [[round(v, rounding) for v in row] for row in t.tolist()] if t.dim() == 2 \
                else [round(v, rounding) for v in t.tolist()]

        return {"method": "Minitron activation importance: L2 over windows of mean over tokens of |activation|",
                "windows": self.windows, "tokens": self.tokens,
                "block_influence": self.block_influence, "angular_distance": self.angular_distance,
                "heads": listed(self.heads), "kv_groups": listed(self.kv_groups),
                "neurons": listed(self.neurons), "channels": listed(self.channels)}


def _first_arg(args, kwargs):
    return args[0] if args else next(iter(kwargs.values()))


def _head_scores(channel_scores: torch.Tensor, heads: int, kv_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel scores of o_proj's input [heads * head_dim] -> per-head and per-KV-group L2 norms."""
    per_head = channel_scores.view(heads, -1)
    groups = per_head.view(kv_heads, heads // kv_heads, -1)
    return torch.linalg.vector_norm(per_head, dim=1), torch.linalg.vector_norm(groups, dim=(1, 2))


@torch.inference_mode()
def collect_importance(model, adapter: ArchitectureAdapter, windows: list[torch.Tensor],
                       kinds=KINDS, progress=lambda message: None) -> Importance:
    """Run `windows` (token id tensors [1, seq]) through `model` once and score what `kinds` asks for."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown importance kinds {sorted(unknown)} (known: {', '.join(KINDS)})")
    config = model.config
    layers = adapter.decoder_layers(model)
    device = input_device(model)  # offloaded (model.device_map): accelerate's main device
    heads = [L2OfMeanAbs() for _ in layers]
    neurons = [L2OfMeanAbs() for _ in layers]
    inner_norms = [(name, module) for name, module in adapter.hidden_norms(model) if name != "norm"]
    channels = {name: L2OfMeanAbs() for name, _ in inner_norms}
    energy = {name: MeanSquare() for name, _ in adapter.hidden_norms(model)}
    states: list[torch.Tensor] = []

    def pre(accumulator):
        return lambda module, args, kwargs: accumulator.add(_first_arg(args, kwargs))

    def post(accumulator):
        return lambda module, args, output: accumulator.add(output)

    hooks = []
    if "heads" in kinds:
        hooks += [getattr(adapter.attention(layer), adapter.attn_out_name).register_forward_pre_hook(
            pre(acc), with_kwargs=True) for layer, acc in zip(layers, heads)]
    if "neurons" in kinds:
        hooks += [getattr(adapter.mlp(layer), adapter.mlp_out_name).register_forward_pre_hook(
            pre(acc), with_kwargs=True) for layer, acc in zip(layers, neurons)]
    if "channels" in kinds:
        hooks += [module.register_forward_hook(post(channels[name])) for name, module in inner_norms]
        hooks += [module.register_forward_pre_hook(pre(energy[name]), with_kwargs=True)
                  for name, module in adapter.hidden_norms(model)]
    if "layers" in kinds:
        hooks += [layer.register_forward_pre_hook(
            lambda module, args, kwargs: states.append(_first_arg(args, kwargs).float()[0].cpu()), with_kwargs=True)
            for layer in layers]
        hooks.append(layers[-1].register_forward_hook(
            lambda module, args, output: states.append((output[0] if isinstance(output, tuple) else output)
                                                       .float()[0].cpu())))
    influence, angular = [], []
    try:
        for index, window in enumerate(windows):
            states.clear()
            model(input_ids=window.to(device), use_cache=False)
            if "layers" in kinds:
                influence.append(layer_importance.block_influence([states]))
                angular.append(layer_importance.angular_block_distances([states], 1))
            if (index + 1) % max(1, len(windows) // 4) == 0:
                progress(f"importance: {index + 1}/{len(windows)} calibration windows")
    finally:
        for hook in hooks:
            hook.remove()

    result = Importance(windows=len(windows), tokens=sum(w.numel() for w in windows))
    if "heads" in kinds:
        scored = [_head_scores(acc.result(), config.num_attention_heads, config.num_key_value_heads) for acc in heads]
        result.heads = torch.stack([h for h, _ in scored])
        result.kv_groups = torch.stack([g for _, g in scored])
    if "neurons" in kinds:
        result.neurons = torch.stack([acc.result() for acc in neurons])
    if "channels" in kinds:
        result.norm_names = [name for name, _ in inner_norms]
        result.channels_by_norm = torch.stack([channels[name].result() for name in result.norm_names])
        result.channels = result.channels_by_norm.sum(dim=0)
        result.norm_energy = {name: acc.result() for name, acc in energy.items()}
    if "layers" in kinds:
        result.block_influence = [sum(col) / len(col) for col in zip(*influence)]
        result.angular_distance = [sum(col) / len(col) for col in zip(*angular)]
    return result
