"""Measure a model and its source side by side and score it with the competition formula.

Perf = the suite's weighted mean of task metrics; tpt = median time per output token at the first
batch size. Score = max(0.5·PerfNorm + 0.5·SpeedNorm, 0) (compressor.evaluate.score).
"""

import time
from pathlib import Path

from compressor.evaluate import baseline_cache
from compressor.evaluate.kv.measure import measure_torch_press
from compressor.evaluate.kv.spec import KVPressSpec
from compressor.evaluate.measure_torch import measure_torch
from compressor.evaluate.measure_vllm import measure_vllm
from compressor.evaluate.score import score
from compressor.evaluate.spec import EvalSpec
from compressor.evaluate.suite import Suite, aggregate, load_suite, suite_fingerprint
from compressor.models.sources import content_hash


def measure(folder: Path, suite: Suite, spec, device, progress, press=None) -> dict:
    """`press`: a KVPressSpec to measure through the press loop (press none for a press run's baseline)."""
    started = time.perf_counter()
    if spec.runtime == "vllm":
        m = measure_vllm(folder, suite, spec, progress)
    elif press is not None:
        m = measure_torch_press(folder, suite, spec, device, progress, press)
    else:
        m = measure_torch(folder, suite, spec, device, progress)
    m["perf"] = aggregate(suite, m["tasks"])
    m["tpt_ms"] = m["latency"][str(spec.latency.batch_sizes[0])]["tpt_ms_median"]
    m["seconds"] = round(time.perf_counter() - started, 2)
    return m


def judge(model_dir: Path, baseline_dir: Path | None, spec: EvalSpec, device, progress=lambda message: None,
          fresh_baseline: bool = False) -> dict:
    """Measure `model_dir` (and `baseline_dir`, or its cached measurement) and score it.

    The caller has checked `spec` against both folders' configs (`evaluate.spec.check_folders`).
    """
    suite = load_suite(spec.suite)
    # Without a press or long-context pass the settings (and baseline cache keys) read as before.
    settings = spec.model_dump(mode="json", exclude={"enabled", "baseline"}
                               | {k for k in ("kv_press", "long_context") if getattr(spec, k) is None})
    press = spec.kv_press if spec.press_run() else None
    result = {"runtime": spec.runtime, "device": str(device) if spec.runtime == "torch" else "vllm-cpu",
              "suite": suite.name, "settings": settings,
              "perf_tasks": [t.model_dump() for t in suite.weighted()],
              "perf_definition": " + ".join(f"{t.weight:g}·{t.task}.{t.metric}" for t in suite.weighted())
              + f" / {sum(t.weight for t in suite.weighted()):g}"}
    progress(f"evaluating the output model ({spec.runtime}, suite {suite.name})")
    result["model"] = measure(model_dir, suite, spec, device, progress, press)
    if baseline_dir is not None:
        key = baseline_cache.cache_key(content_hash(baseline_dir), suite_fingerprint(suite), spec.runtime,
                                       settings, str(device))
        cached = None if fresh_baseline else baseline_cache.load_baseline(key)
        if cached is None:
            progress("evaluating the source model (baseline)")
            # a press run's baseline: the source without a press, through the same press loop
            cached = measure(baseline_dir, suite, spec, device, progress, KVPressSpec() if press else None)
            baseline_cache.save_baseline(key, cached)
            result["baseline_from_cache"] = False
        else:
            progress("baseline taken from the cache (--fresh-baseline recomputes)")
            result["baseline_from_cache"] = True
        result["baseline"] = cached
        result["baseline_key"] = key
        result.update(score(result["model"]["perf"], cached["perf"], result["model"]["tpt_ms"], cached["tpt_ms"]))
    return result
