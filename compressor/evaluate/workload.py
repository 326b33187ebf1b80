"""Time per token as the competition server measures it: over the benchmark's own batched inference.

The server runs lm-eval on vLLM and times the whole run; teams quote throughput (tokens/s). Here every
batched generate call lm-eval makes for the suite's generative tasks is timed (wall clock around the call,
model load excluded) and its generated tokens counted (the continuation up to and including the token that
ended it; the padding of rows that finished early is not counted):

    time per token = sum of call wall times / sum of generated tokens,   output tok/s = the inverse.

Prefill is inside the calls, as in the server's figure. The vLLM worker counts the same way
(compressor/runtimes/vllm_worker.py; it cannot import this module) and reports raw sums.
"""

import time


def generated_tokens(continuations, pad_id: int | None, eos_ids: set[int]) -> int:
    """Tokens generated in a batch: each row (a list of ids after the prompt) up to its first pad or EOS,
    the EOS itself counted (it was generated), the padding after it not."""
    total = 0
    for row in continuations:
        count = len(row)
        for i, token in enumerate(row):
            if token in eos_ids:
                count = i + 1
                break
            if token == pad_id:
                count = i
                break
        total += count
    return total


class WorkloadTimer:
    """Sums wall time, generated tokens and requests over the generate calls it wraps."""

    def __init__(self, clock=time.perf_counter, sync=lambda: None):
        self.clock, self.sync = clock, sync
        self.seconds, self.tokens, self.requests, self.calls = 0.0, 0, 0, 0

    def record(self, seconds: float, tokens: int, requests: int) -> None:
        self.seconds += seconds
        self.tokens += tokens
        self.requests += requests
        self.calls += 1

    def wrap_hflm(self, lm) -> None:
        """Time `lm._model_generate` (lm-eval's HFLM, or a subclass such as the KV-press one) on this instance."""
        original = lm._model_generate
        tokenizer = lm.tokenizer
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()

        def timed(context, max_length, stop, **generation_kwargs):
            self.sync()
            start = self.clock()
            out = original(context, max_length, stop, **generation_kwargs)
            self.sync()
            elapsed = self.clock() - start
            rows = out[:, context.shape[1]:].tolist()
            self.record(elapsed, generated_tokens(rows, tokenizer.pad_token_id, eos), context.shape[0])
            return out

        lm._model_generate = timed

    def raw(self) -> dict:
        return {"seconds": self.seconds, "tokens": self.tokens, "requests": self.requests, "calls": self.calls}


def summarize(raw: dict | None) -> dict | None:
    """The workload figures from raw sums (this process's timer or the vLLM worker's); None when nothing ran."""
    if not raw or not raw.get("calls"):
        return None
    tokens, seconds = raw["tokens"], raw["seconds"]
    return {**raw, "tpt_ms": 1000.0 * seconds / tokens if tokens else None,
            "output_tokens_per_s": tokens / seconds if seconds > 0 else None}
