"""`--executor local`: trials one after another in this machine's processes (each with all its CPUs), no Ray."""

from pathlib import Path

from compressor.sweep.objective import objective_value
from compressor.sweep.plan import optuna_distributions, optuna_value
from compressor.sweep.spec import SweepSpec
from compressor.sweep.trial import Trial, resolve_trial, run_trial


def run_planned(root: Path, trials: list[Trial], fresh: bool, threads: int, progress) -> list[str]:
    for index, trial in enumerate(trials, 1):
        progress(f"trial {index}/{len(trials)} {trial.id}: {describe(trial.params)}")
        record = run_trial(root, trial, threads, fresh)
        progress(f"  {outcome(record)}")
    return [trial.id for trial in trials]


def run_optuna(root: Path, base: dict, spec: SweepSpec, model: str | None, fresh: bool, threads: int,
               progress) -> list[str]:
    """Optuna's TPE (seeded), asking one trial at a time; finished trials resume with the values they had, so
    a re-run replays the same history and asks the same next trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=spec.objective.direction,
                                sampler=optuna.samplers.TPESampler(seed=spec.seed))
    distributions, ids = optuna_distributions(spec), []
    for index in range(1, spec.trials + 1):
        asked = study.ask(distributions)
        trial = resolve_trial(base, spec.set_, {p: optuna_value(v) for p, v in asked.params.items()}, model)
        progress(f"trial {index}/{spec.trials} {trial.id}: {describe(trial.params)}")
        record = run_trial(root, trial, threads, fresh)
        progress(f"  {outcome(record)}")
        study.tell(asked, objective_value(root, record, spec))
        ids.append(trial.id)
    return ids


def describe(params: dict) -> str:
    return ", ".join(f"{path}={value}" for path, value in params.items()) or "(the base recipe)"


def outcome(record: dict) -> str:
    if record["status"] == "done":
        return "done (resumed: output already complete)" if record.get("resumed") else f"done in {record['seconds']} s"
    return f"{record['status']}: {record.get('error')}"
