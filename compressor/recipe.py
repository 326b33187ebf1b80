"""Recipe schema (pydantic) and YAML loading with `file: field: message` errors."""

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, ValidationError, create_model, field_validator

from compressor.catalogue import stage_classes, stage_names
from compressor.core.errors import UserError
from compressor.core.overrides import apply_overrides
from compressor.core.resources import named_or_path, recipes_dir
from compressor.core.validation import Strict
from compressor.core.validation import format_validation_error as _format
from compressor.core.yaml_io import read_yaml_file
from compressor.data.calibration import CalibrationSpec
from compressor.data.corpus import check_corpus
from compressor.evaluate.spec import EvalSpec, chat_template_of, check_folders, check_for_models
from compressor.evaluate.suite import load_suite
from compressor.models.sources import check_offload_folder, memory_device, memory_entry
from compressor.stages import check_stage_order

DEFAULT_MODEL = "builtin:smollm2-135m"


class ModelSpec(Strict):
    id: str = Field(DEFAULT_MODEL, description="builtin:NAME, a local HF folder, or a hub id")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    revision: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = Field(False, description="load pickled weights (pytorch_model.bin; unpickled weights-only) "
                                                  "when the folder has no safetensors")
    device_map: Literal["auto", "sequential"] | None = Field(
        None, description="accelerate places the layers: what fits max_memory stays, the rest is offloaded (to the "
                          "CPU, then to disk) and onloaded one module at a time")
    max_memory: dict[Any, Annotated[Any, AfterValidator(memory_entry)]] | None = Field(
        None, description="with device_map: the most each device holds, e.g. {0: 20GB, cpu: 300MB}; keys cpu, mps, "
                          "a CUDA index (0, cuda:1); sizes in bytes or with a unit (GB, MB, KB, GiB, MiB, KiB)")
    offload_folder: Path | None = Field(None, description="with device_map: where offloaded weights go (in a "
                                                          "subfolder removed after the run; default: the system's "
                                                          "temporary folder)")

    @field_validator("device_map")
    @classmethod
    def _not_on_mps(cls, value, info):
        if value is not None and info.data.get("device") == "mps":
            raise ValueError("accelerate offloading does not run on mps: leave device_map out with device: mps")
        return value

    @field_validator("max_memory", mode="before")
    @classmethod
    def _pair_keys(cls, value):
        # each size is validated with its key, so an error names the entry (model.max_memory.KEY)
        return {key: (key, size) for key, size in value.items()} if isinstance(value, dict) else value

    @field_validator("max_memory", "offload_folder")
    @classmethod
    def _with_device_map(cls, value, info):
        if value is not None and "device_map" in info.data and info.data["device_map"] is None:
            raise ValueError("needs device_map (auto or sequential), which is not set")
        if info.field_name == "max_memory" and value is not None:
            devices = {}
            for key in value:
                devices.setdefault(memory_device(key), []).append(key)
            twice = [" and ".join(map(str, keys)) for keys in devices.values() if len(keys) > 1]
            if twice:
                raise ValueError(f"{twice[0]} name the same device")
            value = {memory_device(key): size for key, size in value.items()}
        if info.field_name == "offload_folder" and value is not None:
            check_offload_folder(value)
        return value


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
    """The Recipe class, its `stages` a union discriminated by `stage:` over every stage in the catalogue."""
    stage_union = Annotated[Union[stage_classes()], Field(discriminator="stage")]  # noqa: UP007
    return create_model("Recipe", __base__=RecipeBase, stages=(list[stage_union], []))


def format_validation_error(source: str, error: ValidationError) -> str:
    return _format(source, error, stage_names())


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


def load_recipe(path: Path | str, overrides: list[str] | tuple = ()):
    """A recipe file, or a gallery recipe by name (`fp16`), with `--set PATH=VALUE` overrides applied."""
    data = read_yaml_file(named_or_path(path, recipes_dir(), "recipe"), "recipe")
    if overrides:
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        data = apply_overrides(data, list(overrides))
    return parse_recipe(data, str(path) + (" (with --set)" if overrides else ""))


def _calibrations(params) -> list[tuple[str, CalibrationSpec]]:
    return [(name, value) for name, value in params if isinstance(value, CalibrationSpec)]


def check_calibration(recipe, source: str, model_dir: Path | None, config=None) -> None:
    """Every calibration a stage states: its corpus files are there, the chat template it asks for exists, its
    windows fit the model's positions."""
    positions = getattr(config, "max_position_embeddings", None)
    for index, params in enumerate(recipe.stages):
        for name, calibration in _calibrations(params):
            where = f"{source}: stages[{index}].{name}"
            if positions and calibration.seq_len > positions:
                raise UserError(f"{where}.seq_len: {calibration.seq_len} > the model's {positions} positions")
            if getattr(calibration, "suite", None) is None:
                try:
                    check_corpus(calibration.split, calibration.corpus)
                except UserError as error:
                    raise UserError(f"{where}: {error}") from None
            if calibration.chat_template and model_dir is not None and not chat_template_of(model_dir):
                raise UserError(f"{where}.chat_template: {model_dir}'s tokenizer has no chat template")


def check_against_config(recipe, config, source: str, model_dir: Path | None = None) -> list[str]:
    """Reject parameters impossible for this model (e.g. dropping every layer) before loading weights;
    `model_dir` (the source folder) also lets tokenizer-dependent settings be checked. Returns warnings."""
    _check_order(recipe, source)
    check_calibration(recipe, source, model_dir, config)
    config = copy.deepcopy(config)  # stages plan their changes on a copy, so each is checked against its input
    warnings, found = [], []

    def prompts():  # the suite's prompts, read once and only when a stage asks
        if not found:
            found.append(suite_prompts(recipe.eval, source, model_dir))
        return found[0]

    for index, params in enumerate(recipe.stages):
        try:
            params.check_config(config)
            before, config = config, params.planned_config(config)
            if params.checks_prompts and model_dir is not None:
                warnings += [f"stages[{index}] ({params.stage}): {w}"
                             for w in params.check_prompts(before, config, prompts)]
        except ValueError as error:
            raise UserError(f"{source}: stages[{index}] ({params.stage}): {error}") from None
    if recipe.eval.enabled:
        try:
            check_for_models(recipe.eval, [config])
            if model_dir is not None:
                check_folders(recipe.eval, [model_dir])
        except UserError as error:
            raise UserError(f"{source}: eval.{error}") from None
    return warnings


def suite_prompts(spec, source: str, model_dir: Path):
    """The generative prompts of the recipe's eval suite in the source's tokens (compressor.evaluate.prompt_lengths)."""
    from transformers import AutoTokenizer

    from compressor.evaluate.prompt_lengths import generative_prompt_lengths

    try:
        suite = load_suite(spec.suite)
    except UserError as error:
        raise UserError(f"{source}: eval.suite: {error}") from None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return generative_prompt_lengths(suite, tokenizer, spec.chat_template, spec.max_gen_toks, spec.limit)
