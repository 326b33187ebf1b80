"""The stage registry: a recipe names a stage, the registry gives its parameters and its function.

Stage modules register themselves when imported (`@register(Params)`); this module imports none of them.
`compressor.catalogue`, a layer above the stages, imports every stage module and hands out the full list.

A stage is `fn(model, tokenizer, params, ctx) -> model`. It never reads YAML, writes files or prints;
what it wants in the report goes through `ctx.record`, files that must travel with the written model
(or sit beside it) go through `ctx.artifact`: the pipeline writes them atomically with the weights.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pydantic import ConfigDict

from compressor.core.validation import Strict
from compressor.models.adapters import ArchitectureAdapter
from compressor.models.shape import ModelShape


class StageParams(Strict):
    """Base of every stage's parameters; subclasses set `stage: Literal["name"]`."""

    model_config = ConfigDict(populate_by_name=True)  # Strict's settings too
    # True: the pipeline keeps a frozen copy of the model as loaded (before any stage) in `ctx.teacher`
    needs_teacher: ClassVar[bool] = False
    # this stage adds or removes decoder layers / attention heads (later stages' indices shift)
    changes_layers: ClassVar[bool] = False
    # this stage's result names layers / heads by index, so a later `changes_layers` stage invalidates it
    depends_on_layers: ClassVar[bool] = False
    # this stage's output is checked against the recipe's eval suite prompts (`check_prompts`), before weights load
    checks_prompts: ClassVar[bool] = False
    # what to change in this stage's parameters when its working memory does not fit (compressor.plan)
    memory_hint: ClassVar[str] = ""

    def check_config(self, config) -> None:
        """Raise ValueError when these parameters cannot apply to a model with this config."""

    def planned_config(self, config):
        """The config this stage will leave (so later stages are checked against it); default unchanged."""
        return config

    def working_memory(self, before: ModelShape, after: ModelShape, device_type: str) -> dict[str, int]:
        """Bytes this stage needs while it runs beyond the weights held (named parts, for compressor.plan):
        `before` the model it receives, `after` the one `planned_config` says it leaves, `device_type` where
        it runs (cpu, cuda). Whether it stays counted in later steps is the planner's business."""
        return {}

    def weights_after(self, shape: ModelShape, held: int) -> int:
        """Bytes of the weights this stage leaves in memory and writes (`held` before it); a quantized model
        holds fewer. Dtype and shape changes go through `planned_config` instead."""
        return held

    def offload_problem(self) -> str | None:
        """Why this stage cannot run on a model whose weights accelerate offloads (model.device_map), or None."""
        return None

    def check_prompts(self, before, after, prompts) -> list[str]:
        """With `checks_prompts`: raise ValueError when the planned config `after` (from `before`) cannot run the
        suite's generative prompts (`prompts()`: compressor.evaluate.prompt_lengths.TaskPrompts); return warnings."""
        return []


@dataclass
class StageContext:
    adapter: ArchitectureAdapter
    device: Any
    records: dict = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None
    teacher: Any = None  # frozen copy of the source as loaded, when a stage needs_teacher (heal)
    # relative path -> (content, in_model): JSON-able dict/list, str or bytes
    artifacts: dict = field(default_factory=dict)

    def record(self, **values) -> None:
        self.records.update(values)

    def artifact(self, name: str, data, in_model: bool = True) -> None:
        """Ask the pipeline to write `data` as `model/<name>` (or `<output>/<name>` when not `in_model`)."""
        self.artifacts[name] = (data, in_model)


def check_offloaded(stages) -> None:
    """Raise ValueError naming the first stage that cannot run on a model with offloaded weights."""
    for index, params in enumerate(stages):
        problem = params.offload_problem()
        if problem:
            raise ValueError(f"stages[{index}] ({params.stage}): not supported with model.device_map offloading "
                             f"weights: {problem}")


def check_stage_order(stages) -> None:
    """Raise ValueError naming the stage that would invalidate an earlier one's layer/head indices."""
    for index, params in enumerate(stages):
        if not params.changes_layers:
            continue
        for earlier, before in enumerate(stages[:index]):
            if before.depends_on_layers:
                raise ValueError(
                    f"stages[{index}] ({params.stage}) changes decoder layers after stages[{earlier}] "
                    f"({before.stage}) chose layers/heads by index: move {before.stage} after {params.stage}")


StageFn = Callable[[Any, Any, StageParams, StageContext], Any]
_REGISTRY: dict[str, tuple[type[StageParams], StageFn]] = {}


def register(params_cls: type[StageParams]) -> Callable[[StageFn], StageFn]:
    name = params_cls.model_fields["stage"].annotation.__args__[0]

    def decorate(fn: StageFn) -> StageFn:
        _REGISTRY[name] = (params_cls, fn)
        return fn

    return decorate


def registered() -> dict[str, tuple[type[StageParams], StageFn]]:
    """The stages whose modules have been imported so far (compressor.catalogue imports all of them)."""
    return dict(_REGISTRY)
