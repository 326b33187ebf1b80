"""Evaluation suites: a YAML naming lm-eval tasks, how many items of each, and how Perf is aggregated.

Task YAMLs live in the packaged `eval/tasks/` (plus any `task_dirs` a suite names); they are copied into a
temporary include folder with relative `data_files` made absolute, because lm-eval resolves them against the
working directory. A suite may also name any lm-eval task (`include_defaults: true`, needs the hub).
"""

import hashlib
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import yaml
from pydantic import Field, ValidationError

from compressor.core.errors import UserError, shown
from compressor.core.resources import eval_dir
from compressor.core.validation import Strict, format_validation_error
from compressor.core.yaml_io import read_yaml_file

BUILTIN_TASKS = eval_dir() / "tasks"
SUITES = eval_dir() / "suites"
# the packaged task YAMLs name their data files relative to the folder holding eval/
BUILTIN_DATA_BASE = eval_dir().parent


GENERATIVE = "generate_until"
TIMINGS = ("synthetic", "workload")


class SuiteTask(Strict):
    task: str
    metric: str = Field(description="the metric read from lm-eval's results, e.g. acc, exact_match")
    weight: float = Field(1.0, ge=0, description="share in Perf; 0 = reported only")
    limit: int | None = Field(None, gt=0, description="items (documents) of the task to use")
    chat_template: bool | None = Field(None, description="prompt through the model's chat template (default: the "
                                                         "suite's chat_template for generative tasks, raw otherwise)")
    chance: float | None = Field(None, ge=0, description="the metric's value for a random guesser (reported beside it)")
    # lm-eval's output_type, read from the task's YAML when the suite loads
    output_type: str | None = Field(None, exclude=True)

    @property
    def generative(self) -> bool:
        return self.output_type == GENERATIVE


class Suite(Strict):
    name: str
    description: str = ""
    tasks: list[SuiteTask] = Field(min_length=1)
    task_dirs: list[Path] = []
    include_defaults: bool = False
    chat_template: bool = Field(False, description="generative tasks go through the model's chat template, as the "
                                                   "lg-aimers server runs them (lm-eval's apply_chat_template)")
    timing: Literal[TIMINGS] = Field("synthetic", description="the time per token the Score uses: `workload` "
                                     "(the suite's generative requests, batched: wall time / generated tokens) or "
                                     "`synthetic` (one fixed prompt at the latency settings' first batch size)")
    source: Path | None = None

    def weighted(self) -> list[SuiteTask]:
        return [t for t in self.tasks if t.weight > 0]

    def uses_chat_template(self, task: SuiteTask, override: bool | None = None) -> bool:
        """Whether `task` runs through the chat template: the task's own setting, else (generative tasks only)
        `override` (the run's --chat-template / target) or the suite's."""
        if task.chat_template is not None:
            return task.chat_template
        return bool(override if override is not None else self.chat_template) and task.generative

    def generative_tasks(self) -> list[SuiteTask]:
        return [t for t in self.tasks if t.generative]


def load_suite(name_or_path: str | Path) -> Suite:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES.glob("*.yaml")))
        raise UserError(f"{shown(path)}: no such suite (builtin suites: {known})")
    data = read_yaml_file(path, "suite")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        suite = Suite.model_validate({**data, "source": path})
    except ValidationError as error:
        raise UserError(format_validation_error(str(path), error)) from None
    suite.task_dirs = [d if d.is_absolute() else (path.parent / d).resolve() for d in suite.task_dirs]
    if not suite.weighted():
        raise UserError(f"{path}: tasks: at least one task needs weight > 0 (Perf would be undefined)")
    _find_tasks(suite, path)
    if suite.timing == "workload" and not suite.generative_tasks():
        raise UserError(f"{path}: timing: workload times the suite's generative tasks and it has none "
                        f"(use timing: synthetic, or add a generate_until task)")
    return suite


def task_index(suite: Suite) -> dict[str, str | None]:
    """task name -> lm-eval output_type, for every task YAML the suite can see."""
    index = {}
    for path, _ in _task_files(suite):
        try:
            config = read_yaml_file(path, "task")
        except UserError:
            continue  # lm-eval reports a broken task file when it is used
        if isinstance(config, dict) and isinstance(config.get("task"), str):
            index[config["task"]] = config.get("output_type")
    return index


def _find_tasks(suite: Suite, path: Path) -> None:
    """Each task's output_type from its YAML; a task no YAML defines is refused (unless lm-eval's own are on)."""
    index = task_index(suite)
    for i, task in enumerate(suite.tasks):
        if task.task in index:
            task.output_type = index[task.task]
        elif not suite.include_defaults:
            raise UserError(f"{path}: tasks[{i}].task: no task {task.task!r} in eval/tasks or the suite's task_dirs "
                            f"(known: {', '.join(sorted(index))})")


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


LM_EVAL_DEFAULT_MAX_GEN_TOKS = 256  # what lm-eval generates when a task names no max_gen_toks


def _cap_generation(config: dict, max_gen_toks: int | None) -> dict:
    if max_gen_toks is not None and config.get("output_type") == GENERATIVE:
        kwargs = config.setdefault("generation_kwargs", {})
        kwargs["max_gen_toks"] = min(kwargs.get("max_gen_toks", LM_EVAL_DEFAULT_MAX_GEN_TOKS), max_gen_toks)
    return config


@contextmanager
def include_folder(suite: Suite, max_gen_toks: int | None = None) -> Iterator[Path]:
    """A temporary lm-eval include folder holding the suite's local tasks with absolute data paths
    (and generative tasks' max_gen_toks capped at `max_gen_toks`, a target's limit)."""
    with tempfile.TemporaryDirectory(prefix="compressor-tasks-") as tmp:
        folder = Path(tmp)
        for path, base in _task_files(suite):
            config = _absolute_data_files(read_yaml_file(path, "task"), base)
            config.setdefault("dataset_kwargs", {})["cache_dir"] = str(folder / "hf_datasets")
            _cap_generation(config, max_gen_toks)
            (folder / path.name).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                            encoding="utf-8")
        yield folder


def suite_fingerprint(suite: Suite) -> str:
    """Hash of the suite file, its task files and their data: a baseline is reused only if all match."""
    digest = hashlib.sha256(suite.model_dump_json(exclude={"source"}).encode())
    for path, base in _task_files(suite):
        digest.update(path.read_bytes())
        config = _absolute_data_files(read_yaml_file(path, "task"), base)
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


def task_limit(task: SuiteTask, limit: int | None) -> int | None:
    """Items of `task` to run: the smaller of the suite's and the run's caps."""
    return min(x for x in (task.limit, limit) if x) if (task.limit or limit) else None


def numeric_metrics(results: dict) -> dict:
    return {k: v for k, v in results.items() if isinstance(v, (int, float)) and "stderr" not in k}


@dataclass
class SuiteRun:
    tasks: dict                                   # {task: {metric: value}}
    samples: dict = field(default_factory=dict)   # {task: lm-eval's logged samples}, when asked for
    workload: dict | None = None                  # raw sums of the generate calls (evaluate/workload.py)


def run_suite(model, tokenizer, suite: Suite, batch_size: int = 8, limit: int | None = None,
              progress=lambda message: None, lm_class=None, chat_template: bool | None = None,
              max_gen_toks: int | None = None, log_samples: bool = False) -> SuiteRun:
    """Every task of the suite on an in-memory transformers model, its generate calls timed (workload)."""
    import torch

    from compressor.evaluate.lm_eval_runner import run_tasks  # lm-eval: only when tasks run
    from compressor.evaluate.workload import WorkloadTimer

    device = next(model.parameters()).device
    timer = WorkloadTimer(sync=torch.cuda.synchronize if device.type == "cuda" else lambda: None)
    run = SuiteRun(tasks={})
    with include_folder(suite, max_gen_toks) as folder:
        for index, task in enumerate(suite.tasks, 1):
            templated = suite.uses_chat_template(task, chat_template)
            label = f"task {index}/{len(suite.tasks)} {task.task}" + (" (chat template)" if templated else "")
            out = run_tasks(model, tokenizer, folder, [task.task], batch_size, limit=task_limit(task, limit),
                            lm_class=lm_class, apply_chat_template=templated, log_samples=log_samples,
                            timer=timer if task.generative else None, progress=progress, label=label)
            run.tasks[task.task] = numeric_metrics(out["results"][task.task])
            if log_samples:
                run.samples[task.task] = out["samples"].get(task.task, [])
    run.workload = timer.raw()
    return run


def run_suite_torch(model, tokenizer, suite: Suite, batch_size: int = 8, limit: int | None = None,
                    progress=lambda message: None, lm_class=None) -> dict:
    """Every task of the suite on an in-memory transformers model; {task: {metric: value}}."""
    return run_suite(model, tokenizer, suite, batch_size, limit, progress, lm_class).tasks
