"""`reduce_hidden`: a smaller hidden size, keeping the most important channels of the residual stream.

Channels are ranked by Minitron's activation importance (arXiv 2407.14679): the sum over every norm
inside the decoder layers of |norm output| averaged over tokens, L2 over calibration windows. The same
channels are kept everywhere: embedding columns (a tied lm_head stays tied), every hidden-size norm
weight, the input columns of q/k/v and gate/up, the output rows of o_proj and down_proj. head_dim and
the QK-norms are unchanged.

RMSNorm divides by the RMS over all channels; with fewer channels the kept ones would come out larger.
With `rescale_norms` each norm weight is multiplied by sqrt(d·E[Σ kept x²] / (d'·E[Σ x²])) measured at
that norm's input on the calibration text, so the kept outputs keep their average scale (exact when
the removed channels carry nothing). Not part of Minitron; `rescale_norms: false` gives its plain slice.

Method: channel selection only. SliceGPT's rotation (arXiv 2401.15024) is not offered because it is
not exact for these models: it needs every norm weight folded into the next linear layer, but EXAONE-4
applies its weighted RMSNorms after the sublayer (the result is added to the residual, nothing linear
follows to absorb the weight), and for tied embeddings folding the final norm into lm_head unties it
(+vocab x hidden parameters, e.g. 28 M for SmolLM2); and slicing the rotated stream is approximate anyway.
"""

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from compressor.data.calibration import CalibrationSpec, calibration_windows
from compressor.edits.importance import collect_importance
from compressor.edits.slicing import slice_embedding, slice_linear, slice_norm
from compressor.edits.target_size import count_or_fraction, resolve_size
from compressor.stages import StageParams, register


class ReduceHiddenParams(StageParams):
    stage: Literal["reduce_hidden"]
    memory_hint: ClassVar[str] = "a shorter calibration.seq_len"
    hidden_size: int | None = Field(None, gt=0, description="hidden channels to keep")
    hidden_fraction: float | None = Field(None, gt=0, le=1, description="or: this share of the channels")
    round_to: int = Field(32, gt=0, description="a fraction is rounded to a multiple of this")
    method: Literal["select"] = Field("select", description="channel selection (no rotation, see module doc)")
    rescale_norms: bool = Field(True, description="keep each RMSNorm's output scale (see module doc)")
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)

    _uniform, _one_size = count_or_fraction("hidden_size", "hidden_fraction")

    def target(self, config) -> int:
        return resolve_size(self.hidden_size, self.hidden_fraction, config.hidden_size, 1, "hidden_size",
                            self.round_to)

    def check_config(self, config) -> None:
        self.target(config)

    def planned_config(self, config):
        config.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        config.hidden_size = self.target(config)
        return config

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        return {"calibration forward": before.forward_bytes(1, self.calibration.seq_len),
                "sliced weights": after.weights_bytes}


def norm_scale(energy: torch.Tensor, kept: list[int]) -> float:
    """sqrt(d·E[Σ kept x²] / (d'·E[Σ x²])): keeps RMSNorm(x)'s kept outputs at their calibration scale."""
    total = float(energy.sum())
    if total == 0.0:
        return 1.0
    return math.sqrt(len(energy) * float(energy[kept].sum()) / (len(kept) * total))


def slice_hidden(model, adapter, kept: list[int], norm_scales: dict[str, float]) -> None:
    embed, head = adapter.embed_tokens(model), adapter.lm_head(model)
    tied = head.weight is embed.weight
    slice_embedding(embed, kept)
    if tied:
        head.weight = embed.weight
        head.in_features = len(kept)
    else:
        slice_linear(head, in_keep=kept)
    for name, norm in adapter.hidden_norms(model):
        slice_norm(norm, kept, norm_scales.get(name, 1.0))
    for layer in adapter.decoder_layers(model):
        attn, mlp = adapter.attention(layer), adapter.mlp(layer)
        for name in adapter.attn_in_names:
            slice_linear(getattr(attn, name), in_keep=kept)
        slice_linear(getattr(attn, adapter.attn_out_name), out_keep=kept)
        for name in adapter.mlp_in_names:
            slice_linear(getattr(mlp, name), in_keep=kept)
        slice_linear(getattr(mlp, adapter.mlp_out_name), out_keep=kept)
    old = model.config.hidden_size
    for module in model.modules():  # modules that cache the width (attention, MLP, decoder layer)
        if getattr(module, "hidden_size", None) == old:
            module.hidden_size = len(kept)
    model.config.head_dim = adapter.head_dim(model.config)
    model.config.hidden_size = len(kept)


@register(ReduceHiddenParams)
def reduce_hidden(model, tokenizer, params: ReduceHiddenParams, ctx):
    adapter, config = ctx.adapter, model.config
    before, size = config.hidden_size, params.target(config)
    windows = calibration_windows(tokenizer, params.calibration)
    scores = collect_importance(model, adapter, windows, kinds=("channels",), progress=ctx.progress)
    kept = sorted(torch.topk(scores.channels, size).indices.tolist())
    scales = {name: norm_scale(energy, kept) if params.rescale_norms else 1.0
              for name, energy in scores.norm_energy.items()}
    slice_hidden(model, adapter, kept, scales)
    ctx.record(hidden_size_before=before, hidden_size_after=size,
               kept_importance_share=round(float(scores.channels[kept].sum() / scores.channels.sum()), 4),
               norm_scale_range=[round(min(scales.values()), 4), round(max(scales.values()), 4)],
               scores={"kept_channels": kept, "channel_importance": scores.to_json()["channels"],
                       "norm_scales": {k: round(v, 5) for k, v in scales.items()}})
    return model
