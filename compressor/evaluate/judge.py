"""Measure a model and its source side by side and score it with the competition formula.

Perf = the suite's weighted mean of task metrics; tpt = median time per output token at the first
batch size. Score = max(0.5·PerfNorm + 0.5·SpeedNorm, 0) (compressor.evaluate.score).
"""

import gc
import time
from pathlib import Path

import torch

from compressor.evaluate import baseline_cache
from compressor.evaluate.kv_spec import KVPressSpec
from compressor.evaluate.latency import time_per_token
from compressor.evaluate.score import score
from compressor.evaluate.suite import Suite, aggregate, include_folder, load_suite, run_suite_torch, suite_fingerprint
from compressor.export.writer import count_params
from compressor.models.sources import content_hash, load_model


def _half_on_cpu(model) -> bool:
    first = next(model.parameters())
    return first.device.type == "cpu" and first.dtype == torch.float16


def measure_torch(folder: Path, suite: Suite, spec, device, progress) -> dict:
    """Load with the stock loader in the stored dtype (proving the folder loads), time it, run the suite."""
    model, tokenizer = load_model(folder, device)
    try:
        latency = {str(b): time_per_token(model, tokenizer, prompt_tokens=spec.latency.prompt_tokens,
                                          new_tokens=spec.latency.new_tokens, runs=spec.latency.runs,
                                          warmup=spec.latency.warmup, batch_size=b)
                   for b in spec.latency.batch_sizes}
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        # CPUs lack fast fp16 kernels (3x slower than fp32 here); the fp32 upcast is exact for every fp16
        # weight, so quality is scored in fp32 while speed above was measured in fp16.
        if _half_on_cpu(model):
            model = model.float()
        per_task = run_suite_torch(model, tokenizer, suite, spec.batch_size, spec.limit, progress)
        long = _long_context(model, tokenizer, spec, progress)
        return {"tasks": per_task, "latency": latency, "dtype": dtype, **long,
                "quality_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                "params": sum(p.numel() for p in model.parameters()),
                "peak_rss_mb": _peak_rss_mb()}
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def measure_vllm(folder: Path, suite: Suite, spec, progress) -> dict:
    from compressor.runtimes.vllm_runtime import run_vllm

    with include_folder(suite) as tasks_dir:
        tasks = [{"task": t.task, "limit": min(x for x in (t.limit, spec.limit) if x) if (t.limit or spec.limit) else None}
                 for t in suite.tasks]
        result = run_vllm({"model": str(folder), "dtype": "auto",
                           "lm_eval": {"include_path": str(tasks_dir), "tasks": tasks, "batch_size": spec.batch_size},
                           "bench": {"prompt_tokens": spec.latency.prompt_tokens, "new_tokens": spec.latency.new_tokens,
                                     "runs": spec.latency.runs, "warmup": spec.latency.warmup,
                                     "batch_sizes": spec.latency.batch_sizes}})
    return {"tasks": result["lm_eval"], "latency": result["bench"], "dtype": result.get("dtype"),
            "params": count_params(folder), "load_s": result["load_s"], "vllm_versions": result["versions"]}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _long_context(model, tokenizer, spec, progress) -> dict:
    """The long-context pass (no press, plus `compare` presses) when the spec asks for it."""
    if spec.long_context is None:
        return {}
    from compressor.evaluate.long_context import ablation_points, measure_points

    points = measure_points(model, tokenizer, ablation_points(None, spec.long_context), spec.long_context, progress)
    return {"long_context": points[0], "long_context_points": points}


def measure(folder: Path, suite: Suite, spec, device, progress, press=None) -> dict:
    """`press`: a KVPressSpec to measure through the press loop (press none for a press run's baseline)."""
    started = time.perf_counter()
    if spec.runtime == "vllm":
        m = measure_vllm(folder, suite, spec, progress)
    elif press is not None:
        from compressor.evaluate.press_measure import measure_torch_press

        m = measure_torch_press(folder, suite, spec, device, progress, press)
    else:
        m = measure_torch(folder, suite, spec, device, progress)
    m["perf"] = aggregate(suite, m["tasks"])
    m["tpt_ms"] = m["latency"][str(spec.latency.batch_sizes[0])]["tpt_ms_median"]
    m["seconds"] = round(time.perf_counter() - started, 2)
    return m


def judge(model_dir: Path, baseline_dir: Path | None, spec, device, progress=lambda message: None,
          fresh_baseline: bool = False) -> dict:
    suite = load_suite(spec.suite)
    # Without a press or long-context pass the settings (and baseline cache keys) read as before.
    settings = spec.model_dump(mode="json", exclude={"enabled", "baseline"}
                               | {k for k in ("kv_press", "long_context") if getattr(spec, k) is None})
    press = spec.kv_press if spec.press_run() else None
    _check_press(spec, press, [model_dir] + ([baseline_dir] if baseline_dir is not None else []))
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


def _check_press(spec, press, folders: list[Path]) -> None:
    """Refuse a press or long-context length a model cannot take, from config.json alone (before loading)."""
    if press is None and spec.long_context is None:
        return
    from transformers import AutoConfig

    from compressor.evaluate.long_context import check_run

    check_run(spec, [AutoConfig.from_pretrained(folder) for folder in folders])
