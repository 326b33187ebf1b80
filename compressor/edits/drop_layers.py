"""`drop_layers`: remove whole decoder layers, by index, from one end, or ranked on calibration text."""

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compressor.data.calibration import CalibrationSpec, calibration_windows
from compressor.edits import layer_importance
from compressor.stages import StageParams, register


class DropLayersParams(StageParams):
    stage: Literal["drop_layers"]
    changes_layers = True
    memory_hint: ClassVar[str] = "a shorter calibration.seq_len"
    layers: list[int] | None = Field(None, description="explicit layer indices to drop")
    count: int | None = Field(None, gt=0, description="how many layers to drop")
    from_: Literal["top", "bottom"] | None = Field(None, alias="from", description="top = last layers")
    by: Literal["angular", "block_influence"] | None = None
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)

    @model_validator(mode="after")
    def _one_way(self):
        if (self.layers is None) == (self.count is None):
            raise ValueError("give either `layers` or `count`")
        if self.layers is not None:
            if self.from_ or self.by:
                raise ValueError("`from` and `by` go with `count`, not with `layers`")
            if not self.layers:
                raise ValueError("`layers` is empty")
            if len(set(self.layers)) != len(self.layers):
                raise ValueError("`layers` has duplicates")
        elif (self.from_ is None) == (self.by is None):
            raise ValueError("with `count`, give exactly one of `from: top|bottom` or `by: angular|block_influence`")
        return self

    def check_config(self, config) -> None:
        total = config.num_hidden_layers
        dropping = len(self.layers) if self.layers is not None else self.count
        if dropping >= total:
            raise ValueError(f"cannot drop {dropping} of {total} layers (at least one must remain)")
        bad = [i for i in self.layers or [] if not -total <= i < total]
        if bad:
            raise ValueError(f"layer indices {bad[:5]} out of range for {total} layers")
        if self.layers is not None:
            same = sorted({i for i in self.layers if sum(j % total == i % total for j in self.layers) > 1})
            if same:
                raise ValueError(f"`layers` names the same layer twice ({', '.join(map(str, same[:5]))} with a "
                                 f"negative index counted from the end of {total})")


    def planned_config(self, config):
        config.num_hidden_layers -= len(self.layers) if self.layers is not None else self.count
        return config

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        if self.by is None:
            return {}
        calibration = self.calibration
        return {"layer states (fp32, one window)": (before.num_layers + 1) * calibration.seq_len * before.hidden * 4,
                "calibration forward": before.forward_bytes(1, calibration.seq_len)}


def choose_layers(model, tokenizer, params: DropLayersParams, adapter) -> tuple[list[int], dict]:
    total = len(adapter.decoder_layers(model))
    if params.layers is not None:
        return sorted(i % total for i in params.layers), {}
    n = params.count
    if params.from_ == "top":
        return list(range(total - n, total)), {}
    if params.from_ == "bottom":
        return list(range(n)), {}
    # one window's states at a time (all of them would be windows x layers x seq_len x hidden floats)
    states = layer_importance.iter_layer_states(model, adapter, calibration_windows(tokenizer, params.calibration))
    if params.by == "angular":
        distances = layer_importance.angular_block_distances(states, n)
        start = min(range(len(distances)), key=distances.__getitem__)
        return list(range(start, start + n)), {"angular_distance": distances}
    influence = layer_importance.block_influence(states)
    return sorted(sorted(range(total), key=influence.__getitem__)[:n]), {"block_influence": influence}


@register(DropLayersParams)
def drop_layers(model, tokenizer, params: DropLayersParams, ctx):
    dropped, scores = choose_layers(model, tokenizer, params, ctx.adapter)
    total = len(ctx.adapter.decoder_layers(model))
    ctx.adapter.keep_layers(model, [i for i in range(total) if i not in dropped])
    ctx.record(dropped_layers=dropped, num_layers_before=total, num_layers_after=total - len(dropped),
               **({"scores": scores} if scores else {}))
    return model
