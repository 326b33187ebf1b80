"""`prune_mlp`: the same intermediate size in every layer, keeping each layer's most important neurons.

Neurons are ranked per layer by Minitron's activation importance (arXiv 2407.14679): |act(gate x) · up x|
averaged over tokens, L2 over calibration windows (compressor.edits.importance). gate/up keep the
rows of the kept neurons, down_proj the matching columns.
"""

from typing import ClassVar, Literal

import torch
from pydantic import Field

from compressor.data.calibration import CalibrationSpec, calibration_windows
from compressor.edits.importance import collect_importance
from compressor.edits.slicing import slice_linear
from compressor.edits.target_size import count_or_fraction, resolve_size
from compressor.stages import StageParams, register


class PruneMlpParams(StageParams):
    stage: Literal["prune_mlp"]
    memory_hint: ClassVar[str] = "a shorter calibration.seq_len"
    intermediate_size: int | None = Field(None, gt=0, description="MLP neurons to keep in every layer")
    intermediate_fraction: float | None = Field(None, gt=0, le=1, description="or: this share of the neurons")
    round_to: int = Field(64, gt=0, description="a fraction is rounded to a multiple of this (GPU-friendly sizes)")
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)

    _uniform, _one_size = count_or_fraction("intermediate_size", "intermediate_fraction")

    def target(self, config) -> int:
        return resolve_size(self.intermediate_size, self.intermediate_fraction, config.intermediate_size, 1,
                            "intermediate_size", self.round_to)

    def check_config(self, config) -> None:
        self.target(config)

    def planned_config(self, config):
        config.intermediate_size = self.target(config)
        return config

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        return {"calibration forward": before.forward_bytes(1, self.calibration.seq_len),
                "sliced weights": after.weights_bytes}


def kept_neurons(scores: torch.Tensor, size: int) -> list[int]:
    """Indices of the `size` highest scores, in their original order."""
    return sorted(torch.topk(scores, size).indices.tolist())


@register(PruneMlpParams)
def prune_mlp(model, tokenizer, params: PruneMlpParams, ctx):
    adapter, config = ctx.adapter, model.config
    before, size = config.intermediate_size, params.target(config)
    windows = calibration_windows(tokenizer, params.calibration)
    scores = collect_importance(model, adapter, windows, kinds=("neurons",), progress=ctx.progress)
    kept_share = []
    for index, layer in enumerate(adapter.decoder_layers(model)):
        kept = kept_neurons(scores.neurons[index], size)
        mlp = adapter.mlp(layer)
        for name in adapter.mlp_in_names:
            slice_linear(getattr(mlp, name), out_keep=kept)
        slice_linear(getattr(mlp, adapter.mlp_out_name), in_keep=kept)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = size
        layer_scores = scores.neurons[index]
        kept_share.append(round(float(layer_scores[kept].sum() / layer_scores.sum()), 4))
    config.intermediate_size = size
    ctx.record(intermediate_size_before=before, intermediate_size_after=size,
               kept_importance_share_min=min(kept_share),
               scores={"kept_importance_share": kept_share, "neuron_importance": scores.to_json()["neurons"]})
    return model
