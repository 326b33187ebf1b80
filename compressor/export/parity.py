"""Parity of a runtime's greedy output with this tool's own: the fixed prompts, greedy decoding, the comparison
(`compressor check`), and an ONNX decoder against the torch fp32 model it was exported from (`export onnx`).

ONNX parity has two views, both against the torch model in fp32 on CPU:
- logits: one pass over prompt + the reference's greedy continuation (teacher forcing) on each side; the max
  abs difference over every position and the whole vocabulary;
- greedy: the ONNX decoder generates with its KV cache, compared position by position and up to the first
  divergence with the reference's greedy ids (`compressor check`'s comparison, reused).
"""

from __future__ import annotations

import time
from pathlib import Path

from compressor.runtimes.onnx_decoder import OnnxDecoder, open_session

PROMPTS = ("The capital of France is", "def fibonacci(n):", "대한민국의 수도는", "1, 2, 3, 4,")
DEFAULT_MIN_AGREEMENT = 0.5  # greedy legitimately diverges after near-ties once weights are half precision


def greedy(model, prompt_ids: list[list[int]], max_tokens: int) -> list[dict]:
    """Greedy continuation of each prompt (batch 1, no padding): exactly `max_tokens` ids and first-step logits.

    Self-contained (it also runs, as source, in the fresh transformers subprocess).
    """
    import torch
    from transformers import GenerationConfig

    # a fresh config: the checkpoint's generation_config.json (sampling, lengths) must not steer the check;
    # min_new_tokens masks EOS so every continuation has max_tokens ids (vLLM: min_tokens)
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_tokens, min_new_tokens=max_tokens)
    out = []
    for ids in prompt_ids:
        input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
        with torch.no_grad():
            generated = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                       generation_config=config, use_model_defaults=False,
                                       return_dict_in_generate=True, output_logits=True)
        out.append({"token_ids": generated.sequences[0, len(ids):].tolist(),
                    "first_logits": generated.logits[0][0].float().cpu()})
    return out


def _positions(expected: list[int], got: list[int], n: int) -> tuple[float, int]:
    same = [i < len(got) and got[i] == expected[i] for i in range(min(n, len(expected)))]
    prefix = next((i for i, ok in enumerate(same) if not ok), len(same))
    return sum(same) / n, prefix


def _first_step_diff(ref_logits, run: dict) -> dict:
    import torch

    if run.get("first_logits") is not None:
        got = run["first_logits"]
        if got.shape != ref_logits.shape:
            return {"logits_max_abs_diff": None}
        return {"logits_max_abs_diff": round(float((got.float() - ref_logits).abs().max()), 5)}
    if run.get("first_logprobs"):  # vLLM: log-softmax of the raw logits, top-k ids only
        ref = torch.log_softmax(ref_logits.float(), dim=-1)
        diffs = [abs(lp - float(ref[int(t)])) for t, lp in run["first_logprobs"].items() if int(t) < len(ref)]
        return {"logprobs_max_abs_diff": round(max(diffs), 5) if diffs else None}
    return {}


def compare(prompts: list[str], ref: dict, got: dict, max_tokens: int) -> list[dict]:
    rows = []
    for i, prompt in enumerate(prompts):
        expected, run = ref["runs"][i], got["runs"][i]
        agreement, prefix = _positions(expected["token_ids"], run["token_ids"], max_tokens)
        rows.append({
            "prompt": prompt,
            "prompt_token_ids": ref["prompt_token_ids"][i],
            "prompt_ids_match": list(got["text_prompt_token_ids"][i]) == list(ref["prompt_token_ids"][i]),
            "agreement": round(agreement, 4),
            "prefix_match": prefix,
            "prefix_agreement": round(prefix / max_tokens, 4),
            **_first_step_diff(expected["first_logits"], run),
            "reference_text": ref["texts"][i],
            "runtime_text": got["texts"][i],
        })
        if not rows[-1]["prompt_ids_match"]:
            rows[-1]["runtime_prompt_token_ids"] = list(got["text_prompt_token_ids"][i])
    return rows


def torch_reference(model, tokenizer, prompts: list[str], max_tokens: int) -> dict:
    """Greedy ids and first-step logits (as `compressor check`'s reference) plus teacher-forced logits."""
    import torch

    prompt_ids = [tokenizer(p).input_ids for p in prompts]
    runs = greedy(model, prompt_ids, max_tokens)
    for ids, run in zip(prompt_ids, runs):
        with torch.no_grad():
            sequence = torch.tensor([ids + run["token_ids"]], dtype=torch.long, device=model.device)
            run["sequence_logits"] = model(sequence).logits[0].float().cpu().numpy()
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
