"""ONNX (onnxruntime, CPU) vs torch on SmolLM2, one run: parity, decode speed, export time, file size; int8 too.

    .venv/bin/python benchmarks/onnx.py [--model builtin:smollm2-135m] [--runs 5] [--threads N] [--json FILE]

Exports the model with `compressor export onnx --int8` (fp32 + int8 `matmul-nbits`), adds the `dynamic` int8 of
the same fp32 file, then, side by side in one process:
- parity vs torch fp32 (the export's own check): logits max abs diff, greedy agreement on the fixed prompts;
- decode speed: greedy, batch 1, a 256-token prompt from the eval corpus and 64 new tokens; time per output
  token over the 63 KV-cached decode steps after the prefill (torch: `compressor bench`'s clock; ONNX: the same
  span around plain onnxruntime runs), median of `--runs` runs interleaved across the sides after one warm-up
  each, both on torch's thread count (onnxruntime's idle threads told not to spin: they would steal the cores
  from the side timed next);
- export time (optimum-onnx) and int8 quantization time, file sizes.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and this file would shadow the `onnx` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

PROMPT_TOKENS, NEW_TOKENS = 256, 64
DYNAMIC_FILE = "model_int8_dynamic.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (default: torch's; on a shared machine 1 is far less noisy: "
                             "torch's OpenMP collapses when the cores are oversubscribed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from compressor.evaluate.latency import fixed_prompt, time_per_token
    from compressor.core.layout import INT8_FILE
    from compressor.export.onnx_export import export_onnx
    from compressor.export.parity import PROMPTS
    from compressor.export.onnx_int8 import quantize_int8
    from compressor.export.parity import onnx_parity, torch_reference
    from compressor.models.sources import load_model, resolve_source
    from compressor.runtimes.onnx_decoder import OnnxDecoder, open_session

    source = resolve_source(args.model)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        onnx_dir = Path(tmp) / "onnx"
        print(f"exporting {source.path} (fp32 + int8 matmul-nbits) ...", file=sys.stderr)
        record = export_onnx(source.path, out=onnx_dir, int8=True, int8_method="matmul-nbits")
        start = time.perf_counter()
        dynamic = quantize_int8(onnx_dir / "model.onnx", onnx_dir / DYNAMIC_FILE, "dynamic")
        dynamic_s = time.perf_counter() - start

        model, tokenizer = load_model(source.path, torch.device("cpu"), torch.float32)
        reference = torch_reference(model, tokenizer, list(PROMPTS), record["parity"]["max_tokens"])
        dynamic_parity = onnx_parity(onnx_dir / DYNAMIC_FILE, reference, tokenizer, record["parity"]["max_tokens"])
        fp32, nbits = record["artifacts"]
        keys = ("logits_max_abs_diff", "agreement", "prefix_agreement")
        sides = {
            "torch fp32": {"file": None, "size_mb": None, "make_s": None},
            "onnx fp32": {"file": "model.onnx", "size_mb": fp32["size_mb"], "make_s": record["seconds"]["export"],
                          **{k: fp32[k] for k in keys}},
            "onnx int8 matmul-nbits": {"file": INT8_FILE, "size_mb": nbits["size_mb"],
                                       "make_s": record["seconds"]["int8"], **{k: nbits[k] for k in keys}},
            "onnx int8 dynamic": {"file": DYNAMIC_FILE, "make_s": round(dynamic_s, 2),
                                  "size_mb": round((onnx_dir / DYNAMIC_FILE).stat().st_size / 2**20, 2),
                                  **{k: dynamic_parity["summary"][k] for k in keys}},
        }

        prompt = fixed_prompt(tokenizer, PROMPT_TOKENS)
        decoders = {name: OnnxDecoder(open_session(onnx_dir / side["file"], threads=threads, spin=False))
                    for name, side in sides.items() if side["file"]}

        def one_run(name: str) -> float:
            """ms per output token over the decode steps of one greedy run."""
            if name == "torch fp32":
                return time_per_token(model, tokenizer, PROMPT_TOKENS, NEW_TOKENS, runs=1, warmup=0)["tpt_ms_median"]
            run = decoders[name].greedy(prompt, NEW_TOKENS)
            return 1000 * run["decode_s"] / run["decode_steps"]

        print(f"timing {len(sides)} sides, {args.runs} interleaved runs each, {threads} threads ...", file=sys.stderr)
        for name in sides:
            one_run(name)  # warm-up
        times = {name: [] for name in sides}
        for _ in range(args.runs):
            for name in sides:
                times[name].append(one_run(name))
    torch_tpt = statistics.median(times["torch fp32"])
    for name, side in sides.items():
        tpt = statistics.median(times[name])
        side.update(tpt_ms_median=round(tpt, 3), tpt_ms_runs=[round(t, 3) for t in times[name]],
                    decode_tokens_per_s=round(1000 / tpt, 2), speed_vs_torch=round(torch_tpt / tpt, 3))

    results = {"model": args.model, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "runs": args.runs,
               "threads": threads, "parity_prompts": list(PROMPTS), "parity_tokens": record["parity"]["max_tokens"],
               "int8_settings": {"matmul-nbits": nbits["quantization"], "dynamic": dynamic},
               "sides": sides, "versions": record["versions"]}
    print(f"{args.model}: greedy {PROMPT_TOKENS}+{NEW_TOKENS} tokens, batch 1, {threads} threads, "
          f"median of {args.runs}; parity on {len(PROMPTS)} prompts x {record['parity']['max_tokens']} tokens")
    header = f"{'side':24} {'MB':>7} {'make s':>7} {'logits diff':>11} {'agree':>6} {'prefix':>6} {'ms/tok':>7} " \
             f"{'tok/s':>6} {'x torch':>7}"
    print(header)
    for name, s in sides.items():
        def fmt(value, spec):
            return format(value, spec) if value is not None else format("-", ">" + spec.split(".")[0])
        print(f"{name:24} {fmt(s['size_mb'], '7.1f')} {fmt(s['make_s'], '7.1f')} "
              f"{fmt(s.get('logits_max_abs_diff'), '11.3g')} {fmt(s.get('agreement'), '6.2f')} "
              f"{fmt(s.get('prefix_agreement'), '6.2f')} {s['tpt_ms_median']:7.2f} {s['decode_tokens_per_s']:6.1f} "
              f"{s['speed_vs_torch']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
