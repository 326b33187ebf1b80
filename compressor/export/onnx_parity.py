"""Parity of an ONNX decoder with the torch fp32 model it was exported from, on the check's fixed prompts.

Two views, both against the torch model in fp32 on CPU:
- logits: one pass over prompt + the reference's greedy continuation (teacher forcing) on each side; the max
  abs difference over every position and the whole vocabulary;
- greedy: the ONNX decoder generates with its KV cache, compared position by position and up to the first
  divergence with the reference's greedy ids (`compressor check`'s comparison, reused).
"""

from __future__ import annotations

import time
from pathlib import Path

from compressor.export.check import compare, greedy
from compressor.runtimes.onnx_runtime import OnnxDecoder, open_session


def torch_reference(model, tokenizer, prompts: list[str], max_tokens: int) -> dict:
    """Greedy ids and first-step logits (as `compressor check`'s reference) plus teacher-forced logits."""
    import torch

    prompt_ids = [tokenizer(p).input_ids for p in prompts]
    runs = greedy(model, prompt_ids, max_tokens)
    for ids, run in zip(prompt_ids, runs):
        with torch.no_grad():
            sequence = torch.tensor([ids + run["token_ids"]], dtype=torch.long)
            run["sequence_logits"] = model(sequence).logits[0].float().numpy()
    return {"prompts": list(prompts), "prompt_token_ids": prompt_ids, "runs": runs,
            "texts": [tokenizer.decode(r["token_ids"]) for r in runs]}


def onnx_parity(onnx_path: Path, reference: dict, tokenizer, max_tokens: int) -> dict:
    """Run `onnx_path` on the reference's prompts; per-prompt rows and a summary (see the module doc)."""
    import numpy as np
    import torch

    start = time.perf_counter()
    session = open_session(onnx_path)
    load_s = time.perf_counter() - start
    decoder = OnnxDecoder(session)
    runs, diffs = [], []
    for ids, ref in zip(reference["prompt_token_ids"], reference["runs"]):
        sequence = ids + ref["token_ids"]
        diffs.append(float(np.abs(decoder.logits(sequence) - ref["sequence_logits"]).max()))
        run = decoder.greedy(ids, max_tokens)
        runs.append({**run, "first_logits": torch.from_numpy(run["first_logits"])})
    got = {"runs": runs, "texts": [tokenizer.decode(r["token_ids"]) for r in runs],
           "text_prompt_token_ids": reference["prompt_token_ids"]}
    rows = compare(reference["prompts"], reference, got, max_tokens)
    for row, diff in zip(rows, diffs):
        row["first_step_logits_max_abs_diff"] = row.pop("logits_max_abs_diff", None)
        row["logits_max_abs_diff"] = round(diff, 6)
        del row["prompt_ids_match"]  # both sides run the reference's ids here; `check` compares tokenizers
    decode_s = sum(r["decode_s"] for r in runs)
    steps = sum(r["decode_steps"] for r in runs)
    summary = {"logits_max_abs_diff": round(max(diffs), 6),
               "agreement": round(sum(r["agreement"] for r in rows) / len(rows), 4),
               "prefix_agreement": round(sum(r["prefix_agreement"] for r in rows) / len(rows), 4),
               "decode_tokens_per_s": round(steps / decode_s, 2) if decode_s > 0 else None}
    return {"summary": summary, "prompts": rows, "load_s": round(load_s, 2),
            "seconds": round(time.perf_counter() - start, 2)}
