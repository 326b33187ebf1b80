"""Run a sweep into a folder: the source's baseline once, the trials (local or Ray), then sweep.json, sweep.md,
pareto.png and best.yaml. A re-run into the same folder skips the trials whose output is complete."""

import json
import os
import sys
import time
from pathlib import Path

import yaml

from compressor.core.atomic import atomic_file, output_lock
from compressor.core.errors import UserError
from compressor.reports.sweep import best_trial, pareto_front, write_sweep_reports
from compressor.sweep.objective import feasible
from compressor.sweep.plan import planned_trials
from compressor.sweep.spec import SweepSpec
from compressor.sweep.trial import (is_complete, read_record, resolve_trial, run_child, trial_baseline, trial_folder,
                                    trial_metrics)

SWEEP_JSON, BEST_YAML = "sweep.json", "best.yaml"


class SweepInterrupted(UserError):
    exit_code = 130


def run_sweep(spec: SweepSpec, base: dict, base_source: str, root: Path, executor: str = "local",
              address: str | None = None, workers: int | None = None, fresh: bool = False,
              model: str | None = None, progress=lambda message: None) -> dict:
    root = Path(root).resolve()  # every executor records the same paths (a Ray worker runs elsewhere)
    root.mkdir(parents=True, exist_ok=True)
    with output_lock(root):  # a second sweep into the same folder is refused, not interleaved
        started = time.perf_counter()
        trials = planned_trials(spec)
        planned = None if trials is None else [resolve_trial(base, spec.set_, params, model) for params in trials]
        threads = trial_threads(spec, executor)
        if fresh or planned is None or not all(is_complete(trial_folder(root, t.id)) for t in planned):
            _measure_baseline(root, base, spec, model, threads, progress)
        interrupted = False
        try:
            ids = _execute(root, base, spec, planned, executor, address, workers, fresh, model, threads, progress)
        except KeyboardInterrupt:
            interrupted = True
            ids = [t.id for t in planned] if planned else _recorded_ids(root)
        document = sweep_document(root, spec, base_source, executor, ids, time.perf_counter() - started)
        write_results(root, document)
    if interrupted or any(t["status"] == "interrupted" for t in document["trials"]):
        done = sum(t["status"] == "done" for t in document["trials"])
        raise SweepInterrupted(f"sweep interrupted: {done} of {len(document['trials'])} trials done, recorded in "
                               f"{root / SWEEP_JSON}; run the same command again to resume")
    return document


def trial_threads(spec: SweepSpec, executor: str) -> int:
    """Torch threads per trial: the sweep's `resources.cpu` on Ray (trials share the machine); the whole machine
    locally, where trials run one at a time (the baseline is measured with the same count, as the cache keys it)."""
    return max(1, int(spec.resources.cpu)) if executor == "ray" else os.cpu_count() or 1


def _execute(root, base, spec, planned, executor, address, workers, fresh, model, threads, progress) -> list[str]:
    if executor == "ray":
        from compressor.sweep.ray_executor import run_ray

        return run_ray(root, base, spec, planned, model, fresh, address, workers, progress)
    from compressor.sweep.local import run_optuna, run_planned

    if planned is None:
        return run_optuna(root, base, spec, model, fresh, threads, progress)
    return run_planned(root, planned, fresh, threads, progress)


def _measure_baseline(root: Path, base: dict, spec: SweepSpec, model: str | None, threads: int, progress) -> None:
    """The source measured once under the trials' eval settings and thread count, into the baseline cache."""
    reference = resolve_trial(base, spec.set_, {}, model)
    recipe_file = root / "recipes" / "baseline.yaml"
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    with atomic_file(recipe_file, force=True) as staging:
        staging.write_text(yaml.safe_dump(reference.recipe, sort_keys=False))
    if not reference.recipe.get("eval", {}).get("baseline", True):
        return
    progress("the source model's baseline (once for the sweep)")
    log_file = root / "logs" / "baseline.log"
    command = [sys.executable, "-m", "compressor.cli", "sweep-baseline", str(recipe_file)]
    try:
        code = run_child(command, log_file, threads)
    except KeyboardInterrupt:
        raise SweepInterrupted("sweep interrupted while measuring the source; run the same command again") from None
    if code != 0:
        from compressor.sweep.trial import last_error

        raise UserError(f"the source's baseline failed: {last_error(log_file, code)} (log: {log_file})")


def _recorded_ids(root: Path) -> list[str]:
    records = sorted((root / "records").glob("*.json"), key=lambda path: path.stat().st_mtime)
    return [path.stem for path in records]


def trial_entry(root: Path, trial_id: str, spec: SweepSpec) -> dict:
    folder = trial_folder(root, trial_id)
    record = read_record(root, trial_id) or {}
    complete = is_complete(folder)
    status = "done" if complete else record.get("status", "pending")
    if status == "done" and not complete:
        status = "failed"
    metrics = trial_metrics(folder) if complete else {}
    params = record.get("params")
    if params is None:
        recipe = folder / "recipe.yaml"
        params = {} if not recipe.is_file() else {"recipe": str(recipe)}
    return {"id": trial_id, "params": params, "status": status, "resumed": bool(record.get("resumed")),
            "error": None if complete else record.get("error"), "folder": f"trials/{trial_id}", "metrics": metrics,
            "feasible": feasible(metrics, spec) if complete else None}


def sweep_document(root: Path, spec: SweepSpec, base_source: str, executor: str, ids: list[str],
                   seconds: float) -> dict:
    root = Path(root)
    trials = [trial_entry(root, trial_id, spec) for trial_id in dict.fromkeys(ids)]
    done = [t for t in trials if t["status"] == "done"]
    best = best_trial(trials, spec.objective.model_dump())
    baseline = next((trial_baseline(trial_folder(root, t["id"])) for t in done), None)
    points = [(t["id"], t["metrics"].get("tpt_ms"), t["metrics"].get("perf")) for t in done]
    return {"name": spec.name, "base": base_source, "search": spec.search, "executor": executor,
            "objective": spec.objective.model_dump(), "constraints": spec.constraints,
            "space": {path: (values.model_dump(by_alias=True) if hasattr(values, "model_dump") else values)
                      for path, values in spec.space.items()},
            "set": spec.set_, "resources": spec.resources.model_dump(), "baseline": baseline,
            "seconds": round(seconds, 1), "trials": trials, "best": best["id"] if best else None,
            "pareto": pareto_front(points)}


def write_results(root: Path, document: dict) -> None:
    with atomic_file(root / SWEEP_JSON, force=True) as staging:
        staging.write_text(json.dumps(document, indent=1))
    write_sweep_reports(document, root)
    best = document["best"]
    if best:
        recipe = yaml.safe_load((trial_folder(root, best) / "recipe.yaml").read_text())
        recipe.pop("output", None)
        with atomic_file(root / BEST_YAML, force=True) as staging:
            staging.write_text(f"# the best trial of sweep {document['name']} ({best}): "
                               f"compressor apply {root / BEST_YAML}\n" + yaml.safe_dump(recipe, sort_keys=False))
