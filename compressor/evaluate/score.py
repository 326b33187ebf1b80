"""The competition score: Score = max(0.5 * PerfNorm + 0.5 * SpeedNorm, 0).

PerfNorm = perf / perf_base (higher perf is better), SpeedNorm = 1 - tpt / tpt_base (tpt = time per
output token, lower is better; a model as fast as its base gets 0, one twice as fast 0.5).
"""


def score(perf: float, perf_base: float, tpt: float, tpt_base: float) -> dict:
    if not perf_base > 0:
        raise ValueError(f"perf_base must be positive, got {perf_base}")
    if not tpt_base > 0:
        raise ValueError(f"tpt_base must be positive, got {tpt_base}")
    perf_norm = perf / perf_base
    speed_norm = 1.0 - tpt / tpt_base
    return {"perf_norm": perf_norm, "speed_norm": speed_norm, "score": max(0.5 * perf_norm + 0.5 * speed_norm, 0.0)}
