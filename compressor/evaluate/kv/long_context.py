"""Long-context cost of a KV press: perplexity on one long document, decode speed and memory at full cache.

Method (one pass per press):
1. The corpus `long` split is joined (blank line between documents) and cut to `tokens` tokens.
2. Teacher-forced perplexity: the document goes through the model in chunks of `chunk` tokens; the
   press compresses the cache after each chunk, so every token is predicted from the compressed past
   plus its own chunk (StreamingLLM: n_sink + window positions, its paper's setting; ratio presses:
   int(seen · (1 − ratio)) positions). NLL is summed over all `tokens − 1` predictions; `ppl` is over
   all of them, `ppl_last_half` over the second half (where the cache is full and presses bite).
3. With the cache as the document left it, `decode_tokens` greedy tokens are decoded one at a time;
   ms/token is the median step time (generation tok/s = 1000 / it).
4. Memory: the KV cache's bytes at its largest (exact, summed over layers) and, on CPU, the peak rise
   of the process RSS during the pass (sampled every 2 ms); on CUDA, peak allocated memory.
"""

from __future__ import annotations

import math
import statistics
import threading
import time

import torch
import torch.nn.functional as F
from pydantic import ValidationError

from compressor.core.errors import UserError
from compressor.data.corpus import leading_token_ids
from compressor.evaluate.kv.runtime import PressRuntime
from compressor.evaluate.kv.spec import KVPressSpec, LongContextSpec


def long_document_ids(tokenizer, tokens: int) -> list[int]:
    ids = leading_token_ids(tokenizer, "long", tokens)
    if len(ids) < tokens:
        raise UserError(f"long_context.tokens: the corpus long split has only {len(ids)} tokens, asked for {tokens}")
    return ids


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        return None


class PeakMemory:
    """Peak rise of process RSS (CPU, sampled) or of CUDA allocated memory while the block runs."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        self.start = _rss_bytes()
        self.peak, self.stop = self.start, threading.Event()
        if self.start is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes() or 0)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        elif self.start is not None:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, _rss_bytes() or 0)
            self.peak_mb = (self.peak - self.start) / 2**20


def measure_long_context(model, tokenizer, press: KVPressSpec | None, spec: LongContextSpec,
                         ids: list[int] | None = None) -> dict:
    """Perplexity, decode ms/token at full cache and memory for one press (None = no press)."""
    runtime = PressRuntime(model, press)
    ids = ids if ids is not None else long_document_ids(tokenizer, spec.tokens)
    doc = torch.tensor([ids], device=runtime.device)
    nll, targets, half = 0.0, 0, len(ids) // 2
    nll_last_half, targets_last_half = 0.0, 0
    steps: list[float] = []
    _warm_up(model, doc[:, :spec.chunk])  # first-pass workspaces (packed weights...) are not the press's memory
    started = time.perf_counter()
    with PeakMemory(runtime.device) as memory, runtime.session():
        cache = runtime.new_cache()
        previous = None  # last logit row of the previous chunk predicts this chunk's first token
        for start in range(0, len(ids), spec.chunk):
            piece = doc[:, start:start + spec.chunk]
            logits = runtime.forward(piece, cache, all_logits=True)[0].float()
            if previous is not None:
                logits = torch.cat([previous, logits])
                first_target = start
            else:
                first_target = start + 1
            previous = logits[-1:]
            predicted = logits[:-1]
            target_ids = doc[0, first_target:start + piece.shape[1]]
            losses = F.cross_entropy(predicted, target_ids, reduction="none").double()
            positions = torch.arange(first_target, first_target + len(target_ids))
            nll += losses.sum().item()
            targets += len(target_ids)
            nll_last_half += losses[positions >= half].sum().item()
            targets_last_half += int((positions >= half).sum())
        full_cache = runtime.state.peak_cache_bytes
        cache_after_prefill = cache.get_seq_length()
        prefill_s = time.perf_counter() - started
        token = previous.argmax(-1).view(1, 1)
        for _ in range(spec.decode_tokens):
            t0 = time.perf_counter()
            logits = runtime.forward(token, cache)
            token = logits[:, -1].argmax(-1, keepdim=True)
            if runtime.device.type == "cuda":
                torch.cuda.synchronize()
            steps.append(1000 * (time.perf_counter() - t0))
    decode_ms = statistics.median(steps)
    return {
        "press": (press or KVPressSpec()).label(),
        "tokens": len(ids), "chunk": spec.chunk,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "ppl": math.exp(nll / targets), "ppl_last_half": math.exp(nll_last_half / targets_last_half),
        "nll_mean": nll / targets,
        "cache_positions_after_prefill": cache_after_prefill,
        "cache_positions_after_decode": cache.get_seq_length(),
        "kv_cache_mb_peak": round(max(full_cache, runtime.state.peak_cache_bytes) / 2**20, 3),
        "decode_ms_per_token": decode_ms, "decode_ms_mean": statistics.fmean(steps),
        "decode_tokens": spec.decode_tokens, "generation_tok_per_s": 1000.0 / decode_ms,
        "prefill_s": round(prefill_s, 3),
        "peak_memory_mb": None if memory.peak_mb is None else round(memory.peak_mb, 1),
        "peak_memory_kind": "cuda allocated" if runtime.device.type == "cuda" else "process RSS rise",
    }


def _warm_up(model, ids: torch.Tensor) -> None:
    with torch.inference_mode():
        model(input_ids=ids, use_cache=True)
        model(input_ids=ids[:, :1], use_cache=True)


def check_length(spec: LongContextSpec, points: list[KVPressSpec], config) -> None:
    """Positions beyond the model's context are refused (StreamingLLM re-uses positions within its cache)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return
    needed = spec.tokens + spec.decode_tokens
    for point in points:
        if point.window is None and needed > limit:
            raise UserError(f"long_context.tokens: {spec.tokens} + {spec.decode_tokens} decoded tokens exceed the "
                            f"model's {limit} positions (press {point.label()})")


def ablation_points(press: KVPressSpec | None, spec: LongContextSpec) -> list[KVPressSpec]:
    """No press, the run's press, `compare` presses, then the run's press with one field varied at a time."""
    points = [KVPressSpec()]
    if press is not None and press.active:
        points.append(press)
    points += spec.compare
    if spec.vary and (press is None or not press.active):
        raise UserError("long_context.vary: needs a kv_press to vary")
    for field, values in spec.vary.items():
        for value in values:
            value = float(value) if field == "ratio" else int(value)
            try:
                points.append(KVPressSpec(**{**press.model_dump(), field: value}))
            except ValidationError as error:
                message = error.errors()[0]["msg"].removeprefix("Value error, ")
                raise UserError(f"long_context.vary.{field}: {value}: {message}") from None
    unique = {}
    for point in points:
        unique.setdefault(point.model_dump_json(), point)
    return list(unique.values())


def measure_points(model, tokenizer, points: list[KVPressSpec], spec: LongContextSpec,
                   progress=lambda message: None) -> list[dict]:
    ids = long_document_ids(tokenizer, spec.tokens)
    results = []
    for i, point in enumerate(points, 1):
        progress(f"  long context {i}/{len(points)}: {point.label()} on {spec.tokens} tokens")
        result = measure_long_context(model, tokenizer, point, spec, ids)
        result["spec"] = point.model_dump(mode="json")
        results.append(result)
    none = results[0]
    for r in results:
        r["ppl_increase"] = r["ppl"] / none["ppl"] - 1.0
        r["kv_cache_ratio"] = r["kv_cache_mb_peak"] / none["kv_cache_mb_peak"]
        r["decode_speedup"] = none["decode_ms_per_token"] / r["decode_ms_per_token"]
    return results
