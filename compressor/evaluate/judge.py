"""Measure a model and its source side by side and score it with the competition formula.

Perf here is 1 / word perplexity on the corpus's eval split, so PerfNorm = ppl_base / ppl.
"""

import gc
import time
from pathlib import Path

import torch

from compressor.evaluate.latency import time_per_token
from compressor.evaluate.perplexity import perplexity
from compressor.evaluate.score import score
from compressor.models.sources import load_model


def perplexity_dtype(model):
    """fp16 on CPU is scored in fp32: CPUs lack fast fp16 kernels (3x slower than fp32 here) and the
    upcast is exact for every fp16 weight; the speed is still measured in fp16."""
    first = next(model.parameters())
    return torch.float32 if first.device.type == "cpu" and first.dtype == torch.float16 else None


def measure(model, tokenizer, spec) -> dict:
    started = time.perf_counter()
    latency = time_per_token(model, tokenizer, prompt_tokens=spec.latency.prompt_tokens,
                             new_tokens=spec.latency.new_tokens, runs=spec.latency.runs,
                             warmup=spec.latency.warmup)
    upcast = perplexity_dtype(model)
    if upcast is not None:
        model = model.to(upcast)
    ppl = perplexity(model, tokenizer, split=spec.perplexity.split, limit=spec.perplexity.limit,
                     batch_size=spec.perplexity.batch_size)
    ppl["compute_dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {
        "perf": 1.0 / ppl["word_perplexity"],
        "tpt_ms": latency["tpt_ms_median"],
        "perplexity": ppl,
        "latency": latency,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.perf_counter() - started, 2),
    }


def measure_folder(folder: Path, spec, device) -> dict:
    """Load with the stock loader in the stored dtype (proving the folder loads), measure, free."""
    model, tokenizer = load_model(folder, device)
    try:
        return measure(model, tokenizer, spec)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def judge(model_dir: Path, baseline_dir: Path | None, spec, device, progress=lambda message: None) -> dict:
    progress("evaluating the output model")
    result = {"model": measure_folder(model_dir, spec, device), "runtime": "torch", "device": str(device),
              "perf_definition": "1 / word_perplexity (corpus eval split)"}
    if baseline_dir is not None:
        progress("evaluating the source model (baseline)")
        result["baseline"] = measure_folder(baseline_dir, spec, device)
        result.update(score(result["model"]["perf"], result["baseline"]["perf"],
                            result["model"]["tpt_ms"], result["baseline"]["tpt_ms"]))
    return result
