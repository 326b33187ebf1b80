"""Recipe schema (pydantic) and YAML loading with `file: field: message` errors."""

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from compressor.errors import UserError
from compressor.evaluate.kv_spec import KVPressSpec, LongContextSpec
from compressor.stages import check_stage_order, registry
from compressor.yaml_io import read_yaml_file

DEFAULT_MODEL = "builtin:smollm2-135m"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(Strict):
    id: str = Field(DEFAULT_MODEL, description="builtin:NAME, a local HF folder, or a hub id")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    revision: str | None = None
    trust_remote_code: bool = False


class LatencySpec(Strict):
    prompt_tokens: int = Field(256, gt=0)
    new_tokens: int = Field(128, ge=2)
    runs: int = Field(5, gt=0)
    warmup: int = Field(1, ge=0)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1,
                                   description="the first one is used for Score")


class EvalSpec(Strict):
    enabled: bool = True
    baseline: bool = Field(True, description="also measure the source model (or reuse its cached result)")
    suite: str = Field("default", description="a suite in eval/suites or a path to a suite YAML")
    runtime: Literal["torch", "vllm"] = "torch"
    limit: int | None = Field(None, gt=0, description="cap every task at this many items (quick runs)")
    batch_size: int = Field(8, gt=0)
    latency: LatencySpec = Field(default_factory=LatencySpec)
    kv_press: KVPressSpec | None = Field(None, description="a kvpress press applied while the model runs "
                                                          "(torch runtime only)")
    long_context: LongContextSpec | None = Field(None, description="perplexity, decode speed and memory on a "
                                                                  "long document (default on with a kv_press)")

    @model_validator(mode="after")
    def _press_runtime(self):
        if self.runtime != "torch" and self.kv_press is not None and self.kv_press.active:
            raise ValueError(f"kv_press applies in the torch runtime only (kvpress hooks transformers attention), "
                             f"not {self.runtime}")
        if self.long_context is not None:
            from compressor.evaluate.long_context import ablation_points

            try:
                ablation_points(self.kv_press, self.long_context)
            except (UserError, ValueError) as error:
                raise ValueError(str(error)) from None
        return self

    def press_run(self) -> bool:
        return self.kv_press is not None and self.kv_press.active

    def long_context_spec(self) -> LongContextSpec | None:
        return self.long_context or (LongContextSpec() if self.press_run() else None)


class OutputSpec(Strict):
    dir: Path | None = Field(None, description="default: out/<name>")


class RecipeBase(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    model: ModelSpec = Field(default_factory=ModelSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("model", mode="before")
    @classmethod
    def _model_from_string(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, str) else value

    def output_dir(self) -> Path:
        return self.output.dir or Path("out") / self.name


def recipe_model() -> type[RecipeBase]:
    """The Recipe class, its `stages` a union discriminated by `stage:` over every registered stage."""
    params = tuple(cls for cls, _ in registry().values())
    stage_union = Annotated[Union[params], Field(discriminator="stage")]  # noqa: UP007
    return create_model("Recipe", __base__=RecipeBase, stages=(list[stage_union], []))


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i >= 2 and loc[0] == "stages" and isinstance(loc[i - 1], int):
            continue  # the union tag pydantic inserts after a stage index
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


def format_validation_error(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "union_tag_invalid":
        known = ", ".join(sorted(registry()))
        message = f"unknown stage {first['ctx']['tag']!r} (known: {known})"
    elif first["type"] == "union_tag_not_found":
        message = "missing `stage:` (which stage to run)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {_field_path(tuple(first['loc']))}: {message}{more}"


def parse_recipe(data: Any, source: str = "<recipe>"):
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        recipe = recipe_model().model_validate(data)
    except ValidationError as error:
        raise UserError(format_validation_error(source, error)) from None
    _check_order(recipe, source)
    return recipe


def _check_order(recipe, source: str) -> None:
    try:
        check_stage_order(recipe.stages)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def load_recipe(path: Path | str):
    return parse_recipe(read_yaml_file(path, "recipe"), str(path))


def check_against_config(recipe, config, source: str) -> None:
    """Reject parameters impossible for this model (e.g. dropping every layer) before loading weights."""
    _check_order(recipe, source)
    import copy

    config = copy.deepcopy(config)  # stages plan their changes on a copy, so each is checked against its input
    for index, params in enumerate(recipe.stages):
        try:
            params.check_config(config)
            config = params.planned_config(config)
        except ValueError as error:
            raise UserError(f"{source}: stages[{index}] ({params.stage}): {error}") from None
    if recipe.eval.enabled and recipe.eval.runtime == "torch":
        from compressor.evaluate.long_context import check_run

        try:
            check_run(recipe.eval, [config])
        except UserError as error:
            raise UserError(f"{source}: eval.{error}") from None
