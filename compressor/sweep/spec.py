"""A sweep file (`sweeps/*.yaml`): a base recipe, a parameter space, how to search it and what to maximize.

    name: drop-x-w8a8
    base: drop-layers                      # a gallery recipe or a recipe file (relative to this file, then cwd)
    set: [eval.suite=quick]                # fixed --set overrides of the base
    space:
      stages[0].count: [0, 2, 4]           # a list: grid values, or choices for random / optuna
      stages[1].smoothquant: {low: 0.3, high: 0.9}          # a range (random / optuna): float, or int: true
      heal.steps: {low: 10, high: 1000, log: true, int: true}
    search: grid                           # grid | random | optuna (Optuna's TPE)
    trials: 8                              # random / optuna: how many; grid: every combination
    objective: {metric: score, direction: maximize}
    constraints: ["perf_norm >= 0.95"]
    resources: {cpu: 1, gpu: 0}            # per Ray trial; torch threads = cpu (local: all CPUs, one trial at a time)

Every value the space names is applied to the base and validated as the recipe file would be, so an unknown
path or a value of the wrong type is refused before any weight is read.
"""

import importlib.util
import json
import math
import operator
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from compressor.core.errors import UserError
from compressor.core.overrides import apply_overrides, parse_path
from compressor.core.resources import named_or_path, recipes_dir
from compressor.core.validation import Strict, format_validation_error
from compressor.core.yaml_io import read_yaml_file
from compressor.recipe import parse_recipe

METRICS = ("score", "perf", "perf_norm", "speed_norm", "tpt_ms", "size_mb", "seconds")
_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")
_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


class Range(Strict):
    low: float
    high: float
    log: bool = False
    int_: bool = Field(False, alias="int")

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.int_ and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an int range needs whole low and high")
        return self

    def ends(self) -> list:
        return [int(self.low), int(self.high)] if self.int_ else [self.low, self.high]


class Choices(Strict):
    choices: list = Field(min_length=1)


class Objective(Strict):
    metric: Literal[METRICS] = "score"
    direction: Literal["maximize", "minimize"] = "maximize"


class Resources(Strict):
    cpu: float = Field(1, gt=0, le=1024)
    gpu: float = Field(0, ge=0, le=64)


class Constraint(Strict):
    metric: str
    op: str
    bound: float

    def holds(self, metrics: dict) -> bool | None:
        value = metrics.get(self.metric)
        return None if value is None else bool(_OPERATORS[self.op](value, self.bound))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


class SweepSpec(Strict):
    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    base: str = Field(min_length=1)
    set_: list[str] = Field([], alias="set")
    space: dict[str, list | Range | Choices] = Field(min_length=1)
    search: Literal["grid", "random", "optuna"] = "grid"
    trials: int | None = Field(None, ge=1, le=10_000)
    seed: int = 0
    objective: Objective = Field(default_factory=Objective)
    constraints: list[str] = []
    resources: Resources = Field(default_factory=Resources)

    @field_validator("space")
    @classmethod
    def _values(cls, space: dict) -> dict:
        for path, values in space.items():
            try:
                parse_path(path)
            except UserError:
                raise ValueError(f"{path}: expected dotted keys with [index] parts, e.g. stages[0].count") from None
            if isinstance(values, list) and not values:
                raise ValueError(f"{path}: an empty list (give at least one value)")
        return space

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, constraints: list[str]) -> list[str]:
        for text in constraints:
            parse_constraint(text)
        return constraints

    @model_validator(mode="after")
    def _search_fits_space(self):
        ranges = [path for path, values in self.space.items() if isinstance(values, Range)]
        if self.search == "grid" and ranges:
            raise ValueError(f"search: grid needs lists of values; {ranges[0]} is a range (use random or optuna)")
        if self.search == "grid" and self.trials is not None and self.trials != grid_size(self.space):
            raise ValueError(f"trials: a grid runs every combination ({grid_size(self.space)}); "
                             "drop `trials` or use search: random")
        if self.search != "grid" and self.trials is None:
            raise ValueError(f"trials: search {self.search} needs a number of trials")
        return self

    def parsed_constraints(self) -> list[Constraint]:
        return [parse_constraint(text) for text in self.constraints]


def grid_size(space: dict) -> int:
    return math.prod(len(candidate_values(values)) for values in space.values())


def parse_constraint(text: str) -> Constraint:
    match = _CONSTRAINT.match(text)
    if not match or match.group(1) not in METRICS:
        raise ValueError(f"constraint {text!r}: expected METRIC OP NUMBER with METRIC one of {', '.join(METRICS)} "
                         "and OP one of >= <= > <, e.g. 'perf_norm >= 0.95'")
    return Constraint(metric=match.group(1), op=match.group(2), bound=float(match.group(3)))


def assignment(path: str, value) -> str:
    """`--set` text for one value (JSON is YAML, so strings stay strings and lists stay lists)."""
    return f"{path}={json.dumps(value)}"


def candidate_values(values) -> list:
    """A parameter's values: every listed value (a list or choices), a range's two ends (to validate with)."""
    if isinstance(values, Range):
        return values.ends()
    return values.choices if isinstance(values, Choices) else values


def base_recipe_data(base: str, relative_to: Path | None) -> tuple[dict, str]:
    """The base recipe's YAML document and its name as given (relative paths: the sweep file's folder first)."""
    if relative_to is not None and (relative_to / base).is_file():
        path = relative_to / base
    else:
        path = named_or_path(base, recipes_dir(), "recipe")
    data = read_yaml_file(path, "recipe")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data, str(path)


def check_space(spec: SweepSpec, base: dict, source: str) -> None:
    """Each value of each parameter applied alone to the base (with `set`) must make a valid recipe, and the
    recipe must judge its output (a sweep ranks trials by their evaluation)."""
    try:
        fixed = parse_recipe(apply_overrides(base, spec.set_), f"{source} (with the sweep's set)")
    except UserError as error:
        raise UserError(f"{source}: set: {error}") from None
    if not fixed.eval.enabled:
        raise UserError(f"{source}: eval.enabled is false; a sweep ranks trials by their evaluation")
    if spec.objective.metric in ("score", "perf_norm", "speed_norm") and not fixed.eval.baseline:
        raise UserError(f"{source}: eval.baseline is false, so there is no {spec.objective.metric} to "
                        "optimize (use objective.metric perf or tpt_ms)")
    for path, values in spec.space.items():
        for value in candidate_values(values):
            try:
                parse_recipe(apply_overrides(base, [*spec.set_, assignment(path, value)]), "")
            except UserError as error:
                raise UserError(f"space.{path} = {json.dumps(value)}: {str(error).removeprefix(': ')}") from None


def load_sweep(path: Path | str, extra_set: tuple[str, ...] = ()) -> tuple[SweepSpec, dict, str]:
    """The sweep file validated (with `extra_set` overrides after its own `set`), with its base recipe's
    document and that recipe's path or name."""
    path = Path(path)
    data = read_yaml_file(path, "sweep file")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    data.setdefault("name", path.stem if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", path.stem) else "sweep")
    spec = parse_sweep(data, str(path))
    if extra_set:
        spec = spec.model_copy(update={"set_": [*spec.set_, *extra_set]})
    base, base_source = base_recipe_data(spec.base, path.parent)
    try:
        check_space(spec, base, base_source)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    return spec, base, base_source


def parse_sweep(data: dict, source: str) -> SweepSpec:
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as error:
        raise UserError(format_validation_error(source, error)) from None
    if spec.search == "optuna" and importlib.util.find_spec("optuna") is None:
        raise UserError(f"{source}: search: optuna needs Optuna: pip install -e '.[sweep]'")
    return spec


def grid_option(text: str) -> tuple[str, list]:
    """`--grid stages[0].count=2,4,6` (or `=[2, 4, 6]`, YAML) -> ("stages[0].count", [2, 4, 6])."""
    from compressor.core.overrides import parse_assignment

    if "=" not in text:
        raise UserError(f"--grid {text}: expected PATH=V1,V2,..., e.g. stages[0].count=2,4,6")
    path, raw = text.split("=", 1)
    if raw.strip().startswith("["):
        _, values = parse_assignment(f"{path}={raw}")
    else:
        values = [parse_assignment(f"{path}={item}")[1] for item in raw.split(",")]
    if not isinstance(values, list) or not values or any(v == "" for v in values):
        raise UserError(f"--grid {text}: expected one or more comma-separated values")
    return path.strip(), values
