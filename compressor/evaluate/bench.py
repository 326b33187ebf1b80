"""`compressor bench DIR`: time per output token of a saved model in torch or vLLM, batch 1 and batched."""

import gc
from pathlib import Path

import torch

from compressor.evaluate.kv.long_context import ablation_points, measure_points
from compressor.evaluate.kv.runtime import time_per_token_press
from compressor.evaluate.latency import time_per_token
from compressor.evaluate.model_facts import peak_rss_mb
from compressor.evaluate.spec import EvalSpec, LatencySpec, check_folders
from compressor.models.sources import load_model
from compressor.evaluate.measure_vllm import engine_args
from compressor.runtimes.vllm_runtime import device_label, run_vllm


def _peak_mb(device) -> dict:
    peak = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def bench(folder: Path, spec: EvalSpec, device) -> dict:
    """The timing `spec` asks for: through the press loop (a press or a long-context pass), vLLM, or torch."""
    if spec.press_run() or spec.long_context is not None:
        return bench_torch_press(folder, device, spec)
    if spec.runtime == "vllm":
        return bench_vllm(folder, spec.latency, engine_args(spec, folder))
    return bench_torch(folder, device, spec.latency)


def bench_torch(folder: Path, device, latency: LatencySpec) -> dict:
    model, tokenizer = load_model(folder, device)
    try:
        per_batch = {}
        for batch in latency.batch_sizes:
            result = time_per_token(model, tokenizer, prompt_tokens=latency.prompt_tokens,
                                    new_tokens=latency.new_tokens, runs=latency.runs, warmup=latency.warmup,
                                    batch_size=batch)
            result["output_tokens_per_s"] = batch * 1000.0 / result["tpt_ms_median"]
            per_batch[str(batch)] = result
        return {"runtime": "torch", "device": str(device), "batches": per_batch, **_peak_mb(device)}
    finally:
        del model
        gc.collect()


def bench_vllm(folder: Path, latency: LatencySpec, engine: dict | None = None) -> dict:
    """`engine`: vLLM engine settings (measure_vllm.engine_args: context, GPU share, tensor parallel size)."""
    result = run_vllm({"model": str(folder), **(engine or {}), "bench": latency.model_dump()})
    return {"runtime": "vllm", "device": device_label(result.get("build")), "batches": result["bench"],
            "load_s": result["load_s"], "dtype": result.get("dtype"), "versions": result["versions"],
            "vllm_build": result.get("build"), "peak_rss_mb": result.get("peak_rss_mb")}


def bench_torch_press(folder: Path, device, spec: EvalSpec) -> dict:
    """Time per token through the KV-press loop, with and without the press, and the long-context pass."""
    check_folders(spec, [folder])
    press = spec.kv_press if spec.press_run() else None
    model, tokenizer = load_model(folder, device)
    lat = spec.latency

    def batches(p):
        out = {}
        for batch in lat.batch_sizes:
            r = time_per_token_press(model, tokenizer, p, prompt_tokens=lat.prompt_tokens, new_tokens=lat.new_tokens,
                                     runs=lat.runs, warmup=lat.warmup, batch_size=batch)
            r["output_tokens_per_s"] = batch * 1000.0 / r["tpt_ms_median"]
            out[str(batch)] = r
        return out

    try:
        result = {"runtime": "torch", "device": str(device), "engine": "press loop",
                  "kv_press": press.model_dump(mode="json") if press else None, "batches": batches(press)}
        if press is not None:
            result["without_press"] = {"batches": batches(None)}
        long_spec = spec.long_context_spec()
        if long_spec is not None:
            result["long_context_points"] = measure_points(model, tokenizer, ablation_points(press, long_spec),
                                                           long_spec)
        result.update(_peak_mb(device))
        return result
    finally:
        del model
        gc.collect()
