"""Measure one model in a KV-press run (torch runtime): suite, time per token, long-context costs.

What a press run compares (and the Score it reports):
- the output model WITH the press: suite tasks (generation through the press loop), ms/token, long context;
- the Score baseline is the source model WITHOUT a press: the competition's reference serves the source
  as it is, so Score says what the output + press buys against that. It is measured through the same
  press loop (press none), so ms/token compare like with like, and cached under a key holding the press
  settings (the protocol differs from a plain run's `generate` timing);
- the output model WITHOUT its press (`without_press`): ms/token and the long-context pass, so the
  press's own effect is visible apart from what the stages did. (Its suite is not re-run: teacher-forced
  tasks score the same with or without a press, see press_lm.py; only generation differs.)
"""

from __future__ import annotations

import functools
import gc
from pathlib import Path

import torch

from compressor.evaluate.kv.long_context import ablation_points, measure_points
from compressor.evaluate.kv.runtime import PressRuntime, time_per_token_press
from compressor.evaluate.kv.spec import KVPressSpec
from compressor.evaluate.model_facts import dtype_name, half_on_cpu, param_count, peak_rss_mb
from compressor.evaluate.suite import Suite, run_suite
from compressor.models.sources import load_model


def _latency(model, tokenizer, press: KVPressSpec | None, spec) -> dict:
    return {str(b): time_per_token_press(model, tokenizer, press, prompt_tokens=spec.latency.prompt_tokens,
                                         new_tokens=spec.latency.new_tokens, runs=spec.latency.runs,
                                         warmup=spec.latency.warmup, batch_size=b)
            for b in spec.latency.batch_sizes}


def measure_torch_press(folder: Path, suite: Suite, spec, device, progress, press: KVPressSpec,
                        log_samples: bool = False) -> dict:
    """`press` is the run's press for the output model, or press none for the source (baseline)."""
    from compressor.evaluate.kv.lm import PressHFLM  # lm-eval's HFLM: imported when a press run needs it

    model, tokenizer = load_model(folder, device)
    try:
        progress(f"  time per token with press {press.label()}")
        latency = _latency(model, tokenizer, press, spec)
        without = None
        if press.active:
            progress("  time per token without the press")
            without = {"latency": _latency(model, tokenizer, None, spec)}
        dtype = dtype_name(model)
        if half_on_cpu(model):  # quality in the exact fp32 upcast, as measure_torch does
            model = model.float()
        lm_class = functools.partial(PressHFLM, runtime=PressRuntime(model, press))
        run = run_suite(model, tokenizer, suite, spec.batch_size, spec.limit, progress, lm_class=lm_class,
                        chat_template=spec.chat_template, max_gen_toks=spec.max_gen_toks, log_samples=log_samples)
        long_spec = spec.long_context_spec()
        points = ablation_points(press if press.active else None, long_spec)
        long = measure_points(model, tokenizer, points, long_spec, progress)
        m = {"tasks": run.tasks, "latency": latency, "dtype": dtype, "samples": run.samples,
             "workload_raw": {**run.workload, "dtype": dtype_name(model), "batch_size": 1, "engine": "press loop"},
             "quality_dtype": dtype_name(model), "params": param_count(model), "kv_press": press.model_dump(mode="json"),
             "long_context": long[1] if press.active else long[0], "long_context_points": long,
             "peak_rss_mb": peak_rss_mb()}
        if without is not None:
            without["long_context"] = long[0]
            without["tpt_ms"] = without["latency"][str(spec.latency.batch_sizes[0])]["tpt_ms_median"]
            m["without_press"] = without
        return m
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
