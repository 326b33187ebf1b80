"""One model measured in this process (transformers): time per token, the suite, the long-context pass."""

import gc
from pathlib import Path

import torch

from compressor.evaluate.kv.long_context import ablation_points, measure_points
from compressor.evaluate.latency import time_per_token
from compressor.evaluate.model_facts import dtype_name, half_on_cpu, param_count, peak_rss_mb
from compressor.evaluate.suite import Suite, run_suite
from compressor.models.sources import load_model


def measure_torch(folder: Path, suite: Suite, spec, device, progress, log_samples: bool = False) -> dict:
    """Load with the stock loader in the stored dtype (proving the folder loads), time it, run the suite."""
    model, tokenizer = load_model(folder, device)
    try:
        latency = {str(b): time_per_token(model, tokenizer, prompt_tokens=spec.latency.prompt_tokens,
                                          new_tokens=spec.latency.new_tokens, runs=spec.latency.runs,
                                          warmup=spec.latency.warmup, batch_size=b, progress=progress)
                   for b in spec.latency.batch_sizes}
        dtype = dtype_name(model)
        # CPUs lack fast fp16 kernels (3x slower than fp32 here); the fp32 upcast is exact for every fp16
        # weight, so quality is scored in fp32 while speed above was measured in fp16.
        if half_on_cpu(model):
            model = model.float()
        run = run_suite(model, tokenizer, suite, spec.batch_size, spec.limit, progress,
                        chat_template=spec.chat_template, max_gen_toks=spec.max_gen_toks, log_samples=log_samples)
        long = _long_context(model, tokenizer, spec, progress)
        return {"tasks": run.tasks, "latency": latency, "dtype": dtype, **long,
                "workload_raw": {**run.workload, "dtype": dtype_name(model), "batch_size": spec.batch_size},
                "samples": run.samples, "quality_dtype": dtype_name(model), "params": param_count(model),
                "peak_rss_mb": peak_rss_mb()}
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _long_context(model, tokenizer, spec, progress) -> dict:
    """The long-context pass (no press, plus `compare` presses) when the spec asks for it."""
    if spec.long_context is None:
        return {}
    points = measure_points(model, tokenizer, ablation_points(None, spec.long_context), spec.long_context, progress)
    return {"long_context": points[0], "long_context_points": points}
