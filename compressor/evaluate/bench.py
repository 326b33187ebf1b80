"""`compressor bench DIR`: time per output token of a saved model in torch or vLLM, batch 1 and batched."""

import gc
import resource
from pathlib import Path

import torch

from compressor.evaluate.latency import time_per_token
from compressor.models.sources import load_model


def _peak_mb(device) -> dict:
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def bench_torch(folder: Path, device, prompt_tokens: int, new_tokens: int, runs: int, warmup: int,
                batch_sizes: list[int]) -> dict:
    model, tokenizer = load_model(folder, device)
    try:
        per_batch = {}
        for batch in batch_sizes:
            result = time_per_token(model, tokenizer, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                                    runs=runs, warmup=warmup, batch_size=batch)
            result["output_tokens_per_s"] = batch * 1000.0 / result["tpt_ms_median"]
            per_batch[str(batch)] = result
        return {"runtime": "torch", "device": str(device), "batches": per_batch, **_peak_mb(device)}
    finally:
        del model
        gc.collect()


def bench_vllm(folder: Path, prompt_tokens: int, new_tokens: int, runs: int, warmup: int,
               batch_sizes: list[int]) -> dict:
    from compressor.runtimes.vllm_runtime import run_vllm

    result = run_vllm({"model": str(folder), "bench": {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
                                                        "runs": runs, "warmup": warmup, "batch_sizes": batch_sizes}})
    return {"runtime": "vllm", "device": "vllm-cpu", "batches": result["bench"], "load_s": result["load_s"],
            "dtype": result.get("dtype"), "versions": result["versions"], "peak_rss_mb": result.get("peak_rss_mb")}


def bench_torch_press(folder: Path, device, spec, warmup: int) -> dict:
    """Time per token through the KV-press loop, with and without the press, and the long-context pass."""
    from transformers import AutoConfig

    from compressor.evaluate.kv_runtime import time_per_token_press
    from compressor.evaluate.long_context import ablation_points, check_run, measure_points

    check_run(spec, [AutoConfig.from_pretrained(folder)])
    press = spec.kv_press if spec.press_run() else None
    model, tokenizer = load_model(folder, device)
    lat = spec.latency

    def batches(p):
        out = {}
        for batch in lat.batch_sizes:
            r = time_per_token_press(model, tokenizer, p, prompt_tokens=lat.prompt_tokens, new_tokens=lat.new_tokens,
                                     runs=lat.runs, warmup=warmup, batch_size=batch)
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
