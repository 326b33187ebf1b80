"""Evaluation suites: a YAML naming lm-eval tasks, how many items of each, and how Perf is aggregated.

Task YAMLs live in the packaged `eval/tasks/` (plus any `task_dirs` a suite names); they are copied into a
temporary include folder with relative `data_files` made absolute, because lm-eval resolves them against the
working directory. A suite may also name any lm-eval task (`include_defaults: true`, needs the hub).
"""

import hashlib
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compressor.core.errors import UserError
from compressor.core.resources import eval_dir
from compressor.core.validation import format_validation_error

BUILTIN_TASKS = eval_dir() / "tasks"
SUITES = eval_dir() / "suites"
# the packaged task YAMLs name their data files relative to the folder holding eval/
BUILTIN_DATA_BASE = eval_dir().parent


class SuiteTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    metric: str = Field(description="the metric read from lm-eval's results, e.g. acc, exact_match")
    weight: float = Field(1.0, ge=0, description="share in Perf; 0 = reported only")
    limit: int | None = Field(None, gt=0, description="items (documents) of the task to use")


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    tasks: list[SuiteTask] = Field(min_length=1)
    task_dirs: list[Path] = []
    include_defaults: bool = False
    source: Path | None = None

    def weighted(self) -> list[SuiteTask]:
        return [t for t in self.tasks if t.weight > 0]


def load_suite(name_or_path: str | Path) -> Suite:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES.glob("*.yaml")))
        raise UserError(f"{path}: no such suite (builtin suites: {known})")
    try:
        data = yaml.safe_load(path.read_text())
        suite = Suite.model_validate({**data, "source": path})
    except ValidationError as error:
        raise UserError(format_validation_error(str(path), error)) from None
    suite.task_dirs = [d if d.is_absolute() else (path.parent / d).resolve() for d in suite.task_dirs]
    if not suite.weighted():
        raise UserError(f"{path}: tasks: at least one task needs weight > 0 (Perf would be undefined)")
    return suite


def _task_files(suite: Suite) -> list[tuple[Path, Path]]:
    """(task yaml, folder its relative data paths resolve against)."""
    files = [(f, BUILTIN_DATA_BASE) for f in sorted(BUILTIN_TASKS.glob("*.yaml"))]
    for folder in suite.task_dirs:
        files += [(f, f.parent) for f in sorted(Path(folder).glob("*.yaml"))]
    return files


def _absolute_data_files(config: dict, base: Path) -> dict:
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        config["dataset_kwargs"]["data_files"] = {
            split: str(p if Path(p).is_absolute() else (base / p).resolve()) for split, p in files.items()}
    return config


@contextmanager
def include_folder(suite: Suite) -> Iterator[Path]:
    """A temporary lm-eval include folder holding the suite's local tasks with absolute data paths."""
    with tempfile.TemporaryDirectory(prefix="compressor-tasks-") as tmp:
        folder = Path(tmp)
        for path, base in _task_files(suite):
            config = _absolute_data_files(yaml.safe_load(path.read_text()), base)
            config.setdefault("dataset_kwargs", {})["cache_dir"] = str(folder / "hf_datasets")
            (folder / path.name).write_text(yaml.safe_dump(config, sort_keys=False))
        yield folder


def suite_fingerprint(suite: Suite) -> str:
    """Hash of the suite file, its task files and their data: a baseline is reused only if all match."""
    digest = hashlib.sha256(suite.model_dump_json(exclude={"source"}).encode())
    for path, base in _task_files(suite):
        digest.update(path.read_bytes())
        config = _absolute_data_files(yaml.safe_load(path.read_text()), base)
        for data in ((config.get("dataset_kwargs") or {}).get("data_files") or {}).values():
            if Path(data).is_file():
                digest.update(Path(data).read_bytes())
    return digest.hexdigest()


def metric_value(task_results: dict, metric: str) -> float:
    """lm-eval keys metrics as 'name,filter'; take the unfiltered one or the only filtered one."""
    for key, value in task_results.items():
        if key.split(",")[0] == metric and isinstance(value, (int, float)):
            return float(value)
    raise KeyError(f"metric {metric!r} not in lm-eval results {sorted(task_results)}")


def aggregate(suite: Suite, per_task: dict[str, dict]) -> float:
    """Perf = weighted mean of each weighted task's metric."""
    weighted = suite.weighted()
    total = sum(t.weight for t in weighted)
    return sum(t.weight * metric_value(per_task[t.task], t.metric) for t in weighted) / total


def run_suite_torch(model, tokenizer, suite: Suite, batch_size: int = 8, limit: int | None = None,
                    progress=lambda message: None, lm_class=None) -> dict:
    """Every task of the suite on an in-memory transformers model; {task: {metric: value}}."""
    from compressor.evaluate.lm_eval_runner import evaluate_tasks  # lm-eval and torch: only when tasks run

    per_task = {}
    with include_folder(suite) as folder:
        for task in suite.tasks:
            progress(f"  task {task.task}")
            cap = min(x for x in (task.limit, limit) if x) if (task.limit or limit) else None
            results = evaluate_tasks(model, tokenizer, folder, [task.task], batch_size, limit=cap,
                                     lm_class=lm_class)
            per_task[task.task] = {k: v for k, v in results[task.task].items()
                                   if isinstance(v, (int, float)) and "stderr" not in k}
    return per_task
