"""One trial: the base recipe with the trial's values, applied and evaluated by `compressor apply` in its own
process, named by the hash of the resolved recipe (so a re-run finds what is already done).

    SWEEP/recipes/<id>.yaml    the resolved recipe
    SWEEP/trials/<id>/         its output (model/, report.json, ...), written atomically by apply
    SWEEP/records/<id>.json    status, one-line error, seconds
    SWEEP/logs/<id>.log        what apply printed
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from compressor.core.atomic import atomic_file
from compressor.core.layout import CONFIG_FILE, MODEL_DIR, REPORT_JSON
from compressor.core.overrides import apply_overrides
from compressor.recipe import parse_recipe
from compressor.sweep.spec import assignment

STOP_GRACE_S = 120  # a stopped trial unwinds (apply removes its unfinished folder) before it is killed


@dataclass(frozen=True)
class Trial:
    id: str
    params: dict
    recipe: dict  # the validated recipe, as recipe.yaml records it


def resolve_trial(base: dict, fixed: list[str], params: dict, model: str | None = None) -> Trial:
    data = apply_overrides(base, [*fixed, *(assignment(path, value) for path, value in params.items())])
    recipe = parse_recipe(data, "trial " + ", ".join(f"{p}={json.dumps(v)}" for p, v in params.items()))
    if model is not None:
        recipe.model.id = model
    document = recipe.model_dump(mode="json", by_alias=True, exclude_none=True)
    document.pop("output", None)  # the sweep decides where
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:12]
    return Trial(id=digest, params=dict(params), recipe=document)


def trial_folder(root: Path, trial_id: str) -> Path:
    return Path(root) / "trials" / trial_id


def record_path(root: Path, trial_id: str) -> Path:
    return Path(root) / "records" / f"{trial_id}.json"


def is_complete(folder: Path) -> bool:
    """The trial's output is written and its evaluation finished."""
    report = read_report(folder)
    return (report is not None and (folder / MODEL_DIR / CONFIG_FILE).is_file()
            and "evaluation" not in report and bool(report.get("eval")))


def read_report(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / REPORT_JSON).read_text())
    except (OSError, ValueError):
        return None


def trial_metrics(folder: Path) -> dict:
    report = read_report(folder) or {}
    ev = report.get("eval") or {}
    model = ev.get("model") or {}
    return {"perf": model.get("perf"), "perf_norm": ev.get("perf_norm"), "speed_norm": ev.get("speed_norm"),
            "score": ev.get("score"), "tpt_ms": model.get("tpt_ms"),
            "size_mb": (report.get("model") or {}).get("size_mb"), "seconds": report.get("seconds")}


def trial_baseline(folder: Path) -> dict | None:
    baseline = ((read_report(folder) or {}).get("eval") or {}).get("baseline")
    return {"perf": baseline["perf"], "tpt_ms": baseline["tpt_ms"]} if baseline else None


def thread_env(cpus: float) -> dict:
    """The trial's CPUs as its thread count (torch, OpenMP, MKL), so parallel trials do not oversubscribe."""
    threads = str(max(1, int(cpus)))
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the process that started it dies (a Ray worker killed
    on Ctrl-C), so no trial runs on orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_trial(root: Path, trial: Trial, cpus: float = 1, fresh: bool = False) -> dict:
    """Apply and evaluate `trial` under `root` unless its output is complete (and not `fresh`); returns its
    record (also written to records/<id>.json). KeyboardInterrupt stops the child cleanly and propagates."""
    root = Path(root)
    folder = trial_folder(root, trial.id)
    record = {"id": trial.id, "params": trial.params}
    if not fresh and is_complete(folder):
        resumed = {**(read_record(root, trial.id) or {}), **record, "status": "done", "resumed": True, "error": None}
        _write_record(root, resumed)
        return resumed
    recipe_file = root / "recipes" / f"{trial.id}.yaml"
    log_file = root / "logs" / f"{trial.id}.log"
    for path in (recipe_file, log_file, record_path(root, trial.id)):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(recipe_file, force=True) as staging:
        staging.write_text(yaml.safe_dump(trial.recipe, sort_keys=False))
    command = [sys.executable, "-m", "compressor.cli", "apply", str(recipe_file), "--out", str(folder)]
    if folder.exists():
        command.append("--force")  # an unfinished earlier try of this same trial
    started = time.perf_counter()
    try:
        code = run_child(command, log_file, cpus)
    except KeyboardInterrupt:
        _write_record(root, {**record, "status": "interrupted", "resumed": False, "error": "interrupted"})
        raise
    status = "done" if code == 0 else "interrupted" if code == 130 else "failed"
    error = None if code == 0 else last_error(log_file, code).replace(f"{root}/", "")  # paths in the sweep folder
    record.update(status=status, resumed=False, error=error,
                  seconds=round(time.perf_counter() - started, 1))
    _write_record(root, record)
    return record


def run_child(command: list[str], log_file: Path, cpus: float) -> int:
    """Run `command` with the trial's thread count, its output to `log_file`; its exit code. On
    KeyboardInterrupt the child is stopped cleanly first."""
    with open(log_file, "w") as log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                      env=thread_env(cpus), preexec_fn=_die_with_parent) as child:
        try:
            return child.wait()
        except KeyboardInterrupt:
            _stop(child)
            raise


def _stop(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGTERM)  # apply unwinds like on Ctrl-C: no half-written folder stays
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def last_error(log_file: Path, code: int) -> str:
    lines = [line.strip() for line in Path(log_file).read_text(errors="replace").splitlines() if line.strip()]
    message = lines[-1].removeprefix("error: ") if lines else ""
    return message or f"apply exited with code {code}"


def _write_record(root: Path, record: dict) -> None:
    with atomic_file(record_path(root, record["id"]), force=True) as staging:
        staging.write_text(json.dumps(record, indent=1))


def read_record(root: Path, trial_id: str) -> dict | None:
    try:
        return json.loads(record_path(root, trial_id).read_text())
    except (OSError, ValueError):
        return None
