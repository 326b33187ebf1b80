"""`--executor ray`: trials as Ray Tune trials, each with the sweep's resources ({cpu: 1} here, {gpu: 1} on GPU
machines), as many at once as the cluster holds; `search: optuna` through Tune's OptunaSearch.

A local Ray is started for the run (all this machine's CPUs) unless `address` names a running cluster; there,
the sweep folder must be on storage every node sees. Each Tune trial runs the same `run_trial` as the local
executor (apply + eval in a child process), so both executors give the same trials and the same metrics.
"""

import contextlib
import logging
import os
from pathlib import Path

from compressor.core.errors import UserError
from compressor.sweep.objective import objective_value
from compressor.sweep.plan import optuna_distributions, optuna_value
from compressor.sweep.spec import SweepSpec
from compressor.sweep.trial import Trial, resolve_trial, run_trial

OBJECTIVE = "objective"


def require_ray():
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise UserError("--executor ray needs Ray Tune: pip install -e '.[sweep]' (or use --executor local)") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, log_file: Path):
    """Ray for the length of the sweep: a local one (this machine's CPUs) or the cluster at `address`."""
    ray = require_ray()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        with open(log_file, "a") as log, contextlib.redirect_stderr(log):  # Ray's start-up notices go to the log
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=os.cpu_count(), **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UserError(f"--address {address}: Ray did not start or connect: {str(error).splitlines()[0]}") from None
    try:
        with open(log_file, "a") as log, contextlib.redirect_stdout(log):  # Tune's tables go to the log
            yield ray
    finally:
        ray.shutdown()


def run_ray(root: Path, base: dict, spec: SweepSpec, trials: list[Trial] | None, model: str | None, fresh: bool,
            address: str | None, workers: int | None, progress) -> list[str]:
    """Run the planned `trials` (grid, random) or `spec.trials` asked by OptunaSearch; returns their ids."""
    from ray import tune

    root = Path(root).resolve()
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    with ray_session(address, root / "logs" / "ray.log") as ray:
        concurrent = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // spec.resources.cpu))
        progress(f"Ray: {concurrent} trials at a time, {resources} each")
        if trials is not None:
            trainable, param_space, search = _planned_trainable(root, trials, spec, fresh), \
                {"index": tune.grid_search(list(range(len(trials))))}, None
            samples = 1
        else:
            trainable, param_space, search = _optuna_trainable(root, base, spec, model, fresh), {}, \
                _optuna_search(spec, concurrent)
            samples = spec.trials
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=search, num_samples=samples, max_concurrent_trials=concurrent,
                                        trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
            run_config=tune.RunConfig(storage_path=str(root / "ray"), name="tune", verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
        results = tuner.fit()
    ids = [result.metrics.get("trial_id") for result in results if result.metrics]
    if trials is not None:
        return [trial.id for trial in trials]  # the plan's order, whatever order they finished in
    return [trial_id for trial_id in ids if trial_id]


def _planned_trainable(root: Path, trials: list[Trial], spec: SweepSpec, fresh: bool):
    def trainable(config):
        trial = trials[config["index"]]
        record = run_trial(root, trial, spec.resources.cpu, fresh)
        return {OBJECTIVE: objective_value(root, record, spec), "trial_id": trial.id}

    return trainable


def _optuna_trainable(root: Path, base: dict, spec: SweepSpec, model: str | None, fresh: bool):
    paths = list(spec.space)

    def trainable(config):
        params = {path: optuna_value(config[f"p{i}"]) for i, path in enumerate(paths)}
        trial = resolve_trial(base, spec.set_, params, model)
        record = run_trial(root, trial, spec.resources.cpu, fresh)
        return {OBJECTIVE: objective_value(root, record, spec), "trial_id": trial.id}

    return trainable


def _optuna_search(spec: SweepSpec, concurrent: int):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    space = {f"p{i}": distribution for i, distribution in enumerate(optuna_distributions(spec).values())}
    mode = "max" if spec.objective.direction == "maximize" else "min"
    return ConcurrencyLimiter(OptunaSearch(space=space, metric=OBJECTIVE, mode=mode, seed=spec.seed),
                              max_concurrent=concurrent)
