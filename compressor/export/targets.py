"""Deployment targets as data (export/targets/*.yaml): schema, loading, config rewrites, folder checks."""

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ByteSize, Field, ValidationError, field_validator

from compressor.core.errors import UserError
from compressor.core.resources import named_or_path, targets_dir
from compressor.core.validation import Strict, format_validation_error
from compressor.core.yaml_io import read_yaml_file
from compressor.evaluate.spec import EngineSpec
from compressor.evaluate.suite import TIMINGS, load_suite
from compressor.export.check import RUNTIMES
from compressor.export.quantization_config import rewrite_quantization_config
from compressor.export.target_rules import RULES, ModelDir


def _known_rule(rule_id: str) -> str:
    if rule_id not in RULES:
        raise ValueError(f"unknown rule {rule_id!r} (known: {', '.join(sorted(RULES))})")
    return rule_id


def _known_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    return runtime


class Runtime(Strict):
    """The serving stack a target stands for (documentation, and the version rules compare against)."""

    vllm: str | None = None
    transformers: str | None = None
    compressed_tensors: str | None = None
    torch: str | None = None
    gpu: str | None = None
    tensor_parallel: int = Field(1, ge=1)


class QuantizationArgsRewrites(Strict):
    """Rules for each QuantizationArgs block of a compressed-tensors quantization_config."""

    drop_null: list[str] = Field(default_factory=list, description="keys dropped where their value is null")
    drop_unless: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="key -> {field: value}: drop the key unless the block has those values")


class ConfigRewrites(Strict):
    set: dict[str, Any] = Field(default_factory=dict, description="keys written into config.json")
    rename: dict[str, str] = Field(default_factory=dict, description="old key -> new key (old key dropped)")
    quantization_args: QuantizationArgsRewrites = Field(default_factory=QuantizationArgsRewrites)

    def any(self) -> bool:
        return bool(self.set or self.rename or self.quantization_args.drop_null or self.quantization_args.drop_unless)


MODEL_FOLDER_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                      "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                      "compressor.json", "prompt_compressor.json"]


class Layout(Strict):
    zip_root: str = Field("model", pattern=r"^[A-Za-z0-9._-]+$", description="the one top-level folder in the zip")
    files: list[str] = Field(default_factory=lambda: list(MODEL_FOLDER_FILES), min_length=1,
                             description="globs of the model folder's files that ship (others are listed as skipped)")


class Limits(Strict):
    zipped_bytes: ByteSize | None = None
    unzipped_bytes: ByteSize | None = None


class EvalProfile(Strict):
    """How the target's server judges a model: `compressor eval OUT --target T` takes these settings."""

    suite: str = Field(description="the suite standing in for the server's benchmarks (a name or a path)")
    runtime: Literal["torch", "vllm"] = "vllm"
    chat_template: bool | None = Field(None, description="generative tasks through the chat template")
    timing: Literal[TIMINGS] | None = Field(None, description="the time per token the Score uses")
    max_gen_toks: int | None = Field(None, gt=0, description="the server's cap on generated tokens per request")
    engine: EngineSpec | None = None

    def eval_settings(self) -> dict:
        """The EvalSpec fields this profile sets."""
        return self.model_dump(exclude_none=True)


class Target(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    runtime: Runtime = Field(default_factory=Runtime)
    config: ConfigRewrites = Field(default_factory=ConfigRewrites)
    # each entry a glob, or a list of globs of which one must match ("tokenizer.json or tokenizer.model")
    required_files: list[str | list[str]] = Field(default_factory=list)
    layout: Layout = Field(default_factory=Layout)
    limits: Limits = Field(default_factory=Limits)
    checks: list[Annotated[str, AfterValidator(_known_rule)]] = Field(default_factory=list)
    advisories: list[Annotated[str, AfterValidator(_known_rule)]] = Field(
        default_factory=list, description="rules whose findings are warnings (printed and reported), not failures")
    runtime_checks: list[Annotated[str, AfterValidator(_known_runtime)]] = Field(
        default_factory=list, description="runtimes the staged folder must load and generate in (`compressor check`)")
    eval: EvalProfile | None = Field(None, description="the server's evaluation (`compressor eval --target`)")
    source: Path | None = Field(None, exclude=True)

    @field_validator("runtime_checks")
    @classmethod
    def _no_duplicates(cls, checks: list[str]) -> list[str]:
        if len(set(checks)) != len(checks):
            raise ValueError("runtime_checks has duplicates")
        return checks


def load_target(path: Path | str) -> Target:
    """A target file, or a packaged target by name (`lg-aimers`)."""
    path = named_or_path(path, targets_dir(), "target")
    data = read_yaml_file(path, "target")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        target = Target.model_validate(data)
    except ValidationError as error:
        raise UserError(format_validation_error(str(path), error)) from None
    if target.eval is not None:
        try:
            load_suite(target.eval.suite)
        except UserError as error:
            raise UserError(f"{path}: eval.suite: {error}") from None
    target.source = path
    return target


def eval_profile(target: Target) -> EvalProfile:
    if target.eval is None:
        raise UserError(f"{target.source}: eval: target {target.name} states no evaluation profile "
                        f"(add `eval: {{suite: ...}}`)")
    return target.eval


def rewrite_config(config: dict, target: Target) -> dict:
    """A copy of `config` with the target's renames, then sets, applied (the input is untouched)."""
    out = copy.deepcopy(config)
    for old, new in target.config.rename.items():
        if old in out:
            out[new] = out.pop(old)  # the old key holds the current value; no stale copy stays behind
    out.update(copy.deepcopy(target.config.set))
    if isinstance(out.get("quantization_config"), dict):
        out["quantization_config"] = quantization_rewrites(out, target)[0]
    return out


def quantization_rewrites(config: dict, target: Target) -> tuple[dict, list[str]]:
    """The target's rewrite of config["quantization_config"] and what it changed."""
    return rewrite_quantization_config(config.get("quantization_config") or {}, target.config.quantization_args)


def missing_files(folder: Path, target: Target) -> list[str]:
    problems = []
    for entry in target.required_files:
        patterns = [entry] if isinstance(entry, str) else entry
        if not any(any(folder.glob(p)) for p in patterns):
            problems.append(f"required_files: no {' or '.join(patterns)}")
    return problems


def advisories(folder: Path, target: Target) -> list[str]:
    """Warnings of the target's advisory rules for model folder `folder`, each prefixed by its rule id."""
    config_path = Path(folder) / "config.json"
    try:
        model = ModelDir(Path(folder), json.loads(config_path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError):
        return []  # check_model_dir reports the folder's problems
    return [f"{rule_id}: {w}" for rule_id in target.advisories for w in RULES[rule_id](model, target)]


def check_model_dir(folder: Path, target: Target) -> list[str]:
    """Problems of model folder `folder` for `target`, each prefixed by its rule id (empty: all good)."""
    folder = Path(folder)
    problems = missing_files(folder, target)
    config_path = folder / "config.json"
    if not config_path.is_file():
        already = any("config.json" in p for p in problems)
        return problems + (["config.json is missing"] if target.checks and not already else [])
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        return problems + [f"config.json: invalid JSON ({error})"]
    model = ModelDir(folder, config)
    for rule_id in target.checks:
        try:
            found = RULES[rule_id](model, target)
        except (OSError, ValueError, KeyError, TypeError) as error:  # e.g. a truncated safetensors header
            found = [f"could not check ({type(error).__name__}: {error})"]
        problems += [f"{rule_id}: {p}" for p in found]
    return problems
