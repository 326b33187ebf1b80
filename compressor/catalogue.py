"""Every stage a recipe can name: imports each stage module (which registers itself in compressor.stages)."""

# in this order (the recipe schema lists the stages as they registered)
from compressor.edits import cast, drop_layers  # noqa: F401, I001
from compressor.heal import stage as heal  # noqa: F401
from compressor.edits import prune_heads, prune_mlp, reduce_hidden  # noqa: F401
from compressor.quantize import stage as quantize  # noqa: F401
from compressor.prompt import stage as evaluator_heads  # noqa: F401
from compressor.edits import context  # noqa: F401
from compressor.stages import StageFn, StageParams, registered


def stages() -> dict[str, tuple[type[StageParams], StageFn]]:
    return registered()


def stage_names() -> list[str]:
    return sorted(registered())


def stage_classes() -> tuple[type[StageParams], ...]:
    return tuple(cls for cls, _ in registered().values())


def stage_function(name: str) -> StageFn:
    return registered()[name][1]
