"""Measure a model and its source side by side and score it with the competition formula.

Perf = the suite's weighted mean of task metrics; tpt = time per output token, as the suite's `timing`
says: `workload` (the suite's generative requests batched, wall time / generated tokens: what the server
times) or `synthetic` (median TPOT of a fixed prompt at the first latency batch size). Both are recorded.
Score = max(0.5·PerfNorm + 0.5·SpeedNorm, 0) (compressor.evaluate.score).
"""

import time
from pathlib import Path

from compressor.core.errors import UserError
from compressor.evaluate import baseline_cache
from compressor.evaluate.kv.measure import measure_torch_press
from compressor.evaluate.kv.spec import KVPressSpec
from compressor.evaluate.measure_torch import measure_torch
from compressor.evaluate.measure_vllm import measure_vllm
from compressor.evaluate.samples import write_samples
from compressor.evaluate.score import score
from compressor.evaluate.spec import EvalSpec
from compressor.evaluate.suite import Suite, aggregate, load_suite, suite_fingerprint
from compressor.evaluate.workload import summarize
from compressor.models.sources import content_hash
from compressor.runtimes.vllm_runtime import device_label


def timing_of(spec: EvalSpec, suite: Suite) -> str:
    return spec.timing or suite.timing


def measure(folder: Path, suite: Suite, spec, device, progress, press=None, log_samples: bool = False) -> dict:
    """`press`: a KVPressSpec to measure through the press loop (press none for a press run's baseline).

    The Score's time per token (`tpt_ms`) is the workload's or the synthetic one's, as the suite (or spec) says;
    both are kept. Logged samples come back under "samples" (the caller writes and removes them).
    """
    started = time.perf_counter()
    timing = timing_of(spec, suite)
    if spec.runtime == "vllm":
        m = measure_vllm(folder, suite, spec, progress, timing=timing, log_samples=log_samples)
    elif press is not None:
        m = measure_torch_press(folder, suite, spec, device, progress, press, log_samples=log_samples)
    else:
        m = measure_torch(folder, suite, spec, device, progress, log_samples=log_samples)
    m["perf"] = aggregate(suite, m["tasks"])
    m["workload"] = summarize(m.pop("workload_raw", None))
    m["synthetic_tpt_ms"] = m["latency"][str(spec.latency.batch_sizes[0])]["tpt_ms_median"]
    m["timing"] = timing
    if timing == "workload":
        if not m["workload"] or not m["workload"]["tokens"]:
            raise UserError(f"{folder}: timing workload: the suite's generative tasks generated no tokens")
        m["tpt_ms"] = m["workload"]["tpt_ms"]
    else:
        m["tpt_ms"] = m["synthetic_tpt_ms"]
    m["seconds"] = round(time.perf_counter() - started, 2)
    return m


def speed_caveat(runtime: str, device, dtypes: list[str | None]) -> str | None:
    """Why this run's time per token says little about the target's hardware, or None (a CUDA run)."""
    if getattr(device, "type", str(device)) in ("cuda", "vllm-cuda", "vllm-rocm"):
        return None
    notes = ["timed on a CPU (vLLM's CPU build)" if runtime == "vllm" else "timed on a CPU"]
    notes.append("SpeedNorm and Score say little about a GPU such as the lg-aimers L4, where batched kernels, "
                 "half precision and int8 GEMMs change what pays")
    half = sorted({d for d in dtypes if d in ("float16", "bfloat16")})
    if half and runtime == "torch":
        notes.append(f"{'/'.join(half)} speed on a CPU follows its half-precision support (AVX512-FP16, AMX), "
                     f"not a GPU's tensor cores")
    return "; ".join(notes)


def _settings(spec: EvalSpec) -> dict:
    """The spec as recorded (and as the baseline cache key reads it): optional blocks only when set, so a
    plain run's key reads as it did before they existed."""
    optional = ("kv_press", "long_context", "chat_template", "timing", "max_gen_toks", "engine", "target")
    return spec.model_dump(mode="json", exclude={"enabled", "baseline"}
                           | {k for k in optional if getattr(spec, k) is None})


def _save_samples(measurement: dict, samples_dir: Path | None, who: str) -> list[str]:
    samples = measurement.pop("samples", None) or {}
    if samples_dir is None:
        return []
    return [str(write_samples(samples_dir, who, task, rows)) for task, rows in samples.items()]


def baseline_measurement(baseline_dir: Path, spec: EvalSpec, device, progress=lambda message: None,
                         fresh: bool = False, samples_dir: Path | None = None) -> tuple[dict, str, bool]:
    """The source's measurement under `spec`: from the baseline cache, or measured now and cached.
    Returns (measurement, cache key, whether it came from the cache)."""
    suite = load_suite(spec.suite)
    press = spec.kv_press if spec.press_run() else None
    logging = samples_dir is not None
    key = baseline_cache.cache_key(content_hash(baseline_dir, progress), suite_fingerprint(suite), spec.runtime,
                                   _settings(spec), str(device))
    cached = None if fresh or logging else baseline_cache.load_baseline(key)
    if cached is not None:
        progress("baseline taken from the cache (--fresh-baseline recomputes)")
        return cached, key, True
    progress("evaluating the source model (baseline)")
    # a press run's baseline: the source without a press, through the same press loop
    measured = measure(baseline_dir, suite, spec, device, progress, KVPressSpec() if press else None,
                       log_samples=logging)
    baseline_cache.save_baseline(key, measured)
    return measured, key, False


def judge(model_dir: Path, baseline_dir: Path | None, spec: EvalSpec, device, progress=lambda message: None,
          fresh_baseline: bool = False, samples_dir: Path | None = None) -> dict:
    """Measure `model_dir` (and `baseline_dir`, or its cached measurement) and score it.

    The caller has checked `spec` against both folders (`evaluate.spec.check_folders`). `samples_dir`: write
    each request's prompt and answer there (lm-eval's samples), DIR/model/<task>.jsonl and DIR/baseline/...
    """
    suite = load_suite(spec.suite)
    settings = _settings(spec)
    press = spec.kv_press if spec.press_run() else None
    logging = samples_dir is not None
    timing = timing_of(spec, suite)
    result = {"runtime": spec.runtime, "device": str(device) if spec.runtime == "torch" else None,  # vLLM: its build
              "suite": suite.name, "settings": settings, "timing": timing,
              "perf_tasks": [t.model_dump() for t in suite.weighted()],
              "perf_definition": " + ".join(f"{t.weight:g}·{t.task}.{t.metric}" for t in suite.weighted())
              + f" / {sum(t.weight for t in suite.weighted()):g}"}
    progress(f"evaluating the output model ({spec.runtime}, suite {suite.name}, {timing} timing)")
    result["model"] = measure(model_dir, suite, spec, device, progress, press, log_samples=logging)
    if spec.runtime == "vllm":
        result["device"] = device_label(result["model"].get("vllm_build"))  # vllm-cpu, vllm-cuda, ...
    logged = _save_samples(result["model"], samples_dir, "model")
    if baseline_dir is not None:
        cached, key, from_cache = baseline_measurement(baseline_dir, spec, device, progress, fresh_baseline,
                                                       samples_dir)
        if not from_cache:
            logged += _save_samples(cached, samples_dir, "baseline")
        result["baseline_from_cache"] = from_cache
        result["baseline"] = cached
        result["baseline_key"] = key
        result.update(score(result["model"]["perf"], cached["perf"], result["model"]["tpt_ms"], cached["tpt_ms"]))
    caveat = speed_caveat(spec.runtime, device if spec.runtime == "torch" else result["device"],
                          [result["model"].get("dtype"), (result.get("baseline") or {}).get("dtype")])
    if caveat:
        result["speed_caveat"] = caveat
    if logged:
        result["samples"] = logged
    return result
