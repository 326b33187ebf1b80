"""Time per output token (TPOT) of greedy decoding with `transformers.generate` in torch.

Method: a logits processor stamps the clock (after a CUDA sync) each time generate hands it the
logits of a new position. The first stamp comes right after the prefill forward pass, the last after
the final decode step, so TPOT = (last - first) / (new_tokens - 1) covers exactly the new_tokens - 1
KV-cached decode steps (forward + greedy pick) and no prefill; prefill time = first stamp - start of
generate (so it includes generate's setup). Both are read from the same run, no subtraction of runs.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from compressor.core.errors import UserError
from compressor.core.progress import counting, quiet
from compressor.data.corpus import leading_token_ids


class _Clock(LogitsProcessor):
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores):
        if self.cuda:
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        return scores


def fixed_prompt(tokenizer, prompt_tokens: int) -> list[int]:
    """Exactly `prompt_tokens` ids from the start of the corpus eval split (no special tokens)."""
    ids = leading_token_ids(tokenizer, "eval", prompt_tokens)
    if len(ids) < prompt_tokens:
        raise UserError(f"the corpus eval split has fewer than {prompt_tokens} tokens")
    return ids


def time_per_token(model, tokenizer, prompt_tokens: int = 128, new_tokens: int = 32, runs: int = 5,
                   warmup: int = 1, batch_size: int = 1, progress=quiet) -> dict:
    """Median/min/max TPOT in ms over `runs` greedy generations of exactly `new_tokens` tokens."""
    if prompt_tokens < 1 or new_tokens < 2 or runs < 1 or warmup < 0 or batch_size < 1:
        raise UserError("latency: need prompt_tokens >= 1, new_tokens >= 2, runs >= 1, warmup >= 0, batch_size >= 1")
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    ids = torch.tensor([fixed_prompt(tokenizer, prompt_tokens)] * batch_size, device=device)
    attention = torch.ones_like(ids)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    # A fresh config and use_model_defaults=False, so a checkpoint's own generation_config (sampling,
    # cache kind) cannot leak in and differ between the model and its baseline.
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              use_cache=True, eos_token_id=eos, pad_token_id=pad)

    def one_run() -> tuple[float, float]:
        clock = _Clock(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=attention, generation_config=config,
                                 use_model_defaults=False, logits_processor=LogitsProcessorList([clock]))
        if out.shape[1] != prompt_tokens + new_tokens or len(clock.stamps) != new_tokens:
            raise RuntimeError(f"generate made {out.shape[1] - prompt_tokens} tokens "
                               f"({len(clock.stamps)} steps), expected {new_tokens}")
        prefill = clock.stamps[0] - start
        decode = clock.stamps[-1] - clock.stamps[0]
        return 1000 * decode / (new_tokens - 1), 1000 * prefill

    with counting(progress, f"timing batch {batch_size}: {prompt_tokens}-token prompt, {new_tokens} new tokens "
                            f"({warmup} warm-up)", warmup + runs, "runs") as advance:
        for _ in range(warmup):
            one_run()
            advance()
        results = []
        for _ in range(runs):
            results.append(one_run())
            advance()
    tpt, prefill = zip(*results)
    return {
        "tpt_ms_median": statistics.median(tpt),
        "tpt_ms_min": min(tpt),
        "tpt_ms_max": max(tpt),
        "tpt_ms_runs": [round(t, 4) for t in tpt],
        "prefill_ms_median": statistics.median(prefill),
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "runs": runs,
        "batch_size": batch_size,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }
