"""The number a search optimizes for one trial, and whether the trial meets the sweep's constraints."""

from pathlib import Path

from compressor.sweep.spec import SweepSpec
from compressor.sweep.trial import trial_folder, trial_metrics

WORST = 1e9  # what a failed or infeasible trial reports to the searcher (finite: Optuna and Tune both take it)


def feasible(metrics: dict, spec: SweepSpec) -> bool | None:
    """True when every constraint holds; None when a metric a constraint names is missing."""
    held = [constraint.holds(metrics) for constraint in spec.parsed_constraints()]
    return None if None in held else all(held)


def objective_value(root: Path, record: dict, spec: SweepSpec) -> float:
    worst = -WORST if spec.objective.direction == "maximize" else WORST
    if record["status"] != "done":
        return worst
    metrics = trial_metrics(trial_folder(root, record["id"]))
    value = metrics.get(spec.objective.metric)
    return worst if value is None or feasible(metrics, spec) is False else float(value)
