"""Which parameter sets a sweep tries: every combination (grid), seeded draws (random), or Optuna's TPE."""

import itertools
import math
import random

from compressor.sweep.spec import Range, SweepSpec, candidate_values


def grid_trials(spec: SweepSpec) -> list[dict]:
    paths = list(spec.space)
    lists = [candidate_values(spec.space[path]) for path in paths]
    return [dict(zip(paths, combination)) for combination in itertools.product(*lists)]


def random_trials(spec: SweepSpec) -> list[dict]:
    """`spec.trials` draws, the same for the same seed (so a re-run resumes the same trials), duplicates
    dropped: a finite space smaller than `trials` is tried whole."""
    rng = random.Random(spec.seed)
    trials, seen = [], set()
    for _ in range(spec.trials * 20):
        if len(trials) == spec.trials:
            break
        params = {path: _draw(values, rng) for path, values in spec.space.items()}
        key = repr(sorted(params.items()))
        if key not in seen:
            seen.add(key)
            trials.append(params)
    return trials


def planned_trials(spec: SweepSpec) -> list[dict] | None:
    """The trials known before the sweep starts (grid, random); None for optuna, which asks as it goes."""
    if spec.search == "grid":
        return grid_trials(spec)
    return random_trials(spec) if spec.search == "random" else None


def optuna_distributions(spec: SweepSpec) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions = {}
    for path, values in spec.space.items():
        if isinstance(values, Range):
            kind = IntDistribution if values.int_ else FloatDistribution
            distributions[path] = kind(*values.ends(), log=values.log)
        else:
            distributions[path] = CategoricalDistribution([_hashable(v) for v in candidate_values(values)])
    return distributions


def optuna_value(value):
    """Optuna keeps categorical choices as tuples where we gave lists; the recipe wants lists back."""
    return [optuna_value(v) for v in value] if isinstance(value, tuple) else value


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _draw(values, rng: random.Random):
    if not isinstance(values, Range):
        return rng.choice(candidate_values(values))
    low, high = values.ends()
    if values.log:
        drawn = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        drawn = rng.uniform(low, high)
    return min(max(round(drawn), low), high) if values.int_ else drawn
