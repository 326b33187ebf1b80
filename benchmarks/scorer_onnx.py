"""EHPC scorer (arXiv 2501.12959) in onnxruntime vs torch on SmolLM2, one run: parity and latency at 2k tokens.

    .venv/bin/python benchmarks/scorer_onnx.py [--ehpc-dir out/ehpc] [--tokens 2048] [--runs 5] [--threads 1]

Exports the scorer alone (`compressor export onnx --scorer-only`, with its parity gate) into a temporary folder,
then, side by side in one process, on one prompt of `--tokens` tokens (real-text filler with the spec's needle and
question): the scores' max abs difference, whether the kept words are identical at rates 1/2, 1/4, 1/10, and the
latency of scoring (layers 0..L*, one forward) and of a whole `compress` call (tokenize, score, select), median
of `--runs` runs interleaved across the sides after one warm-up each, both sides on the same thread count.
Without --ehpc-dir the evaluator heads come from benchmarks/ehpc.py's discovery on the bundled SmolLM2 (cached).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder comes first on sys.path (benchmarks/onnx.py would shadow the `onnx` package)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RATES = (0.5, 0.25, 0.1)


def _ehpc_folder(given: str | None, probe_tokens: int, progress) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("ehpc_bench", REPO / "benchmarks" / "ehpc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ehpc_folder(given, probe_tokens, progress)


def _median_s(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ehpc-dir", default=None, help="output or model folder with prompt_compressor.json")
    parser.add_argument("--probe-tokens", type=int, default=1024, help="discovery probe length (no --ehpc-dir)")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from compressor.export.onnx_export import export_onnx
    from compressor.prompt import PromptCompressor
    from compressor.prompt.onnx_scorer import OnnxPromptCompressor
    from compressor.prompt.probes import build_probes
    from compressor.prompt.spec import read_spec

    progress = lambda m: print(f"• {m}", file=sys.stderr, flush=True)  # noqa: E731
    folder = _ehpc_folder(args.ehpc_dir, args.probe_tokens, progress)
    spec = read_spec(folder)
    with tempfile.TemporaryDirectory(prefix="scorer-onnx-") as tmp:
        onnx_dir = Path(tmp) / "onnx"
        t0 = time.perf_counter()
        record = export_onnx(folder, out=onnx_dir, scorer_only=True, progress=progress)
        export_s = time.perf_counter() - t0
        torch_pc = PromptCompressor.from_pretrained(folder)
        onnx_pc = OnnxPromptCompressor.from_pretrained(onnx_dir, threads=args.threads)
        text = build_probes(torch_pc.tokenizer, args.tokens, needle=spec.probe.needle, question=spec.probe.question,
                            depths=[0.5], seed=1)[0].text
        ids = torch_pc.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        progress(f"{ids.shape[1]}-token prompt, layers 0..{spec.layer} of {spec.model.num_hidden_layers}, "
                 f"{args.threads} thread(s), {args.runs} runs per side")
        expected, got = torch_pc.token_scores(ids), onnx_pc.token_scores(ids)  # also the warm-up
        kept = {}
        for rate in RATES:
            a, b = torch_pc.compress(text, rate=rate), onnx_pc.compress(text, rate=rate)
            kept[str(rate)] = {"identical": a.text == b.text,
                               "agreement": len(set(a.kept_spans) & set(b.kept_spans)) /
                                            len(set(a.kept_spans) | set(b.kept_spans))}
        score_t, score_o, comp_t, comp_o = [], [], [], []
        for _ in range(args.runs):  # interleaved: drift on a shared machine hits both sides alike
            score_t += _median_s(lambda: torch_pc.token_scores(ids), 1)
            score_o += _median_s(lambda: onnx_pc.token_scores(ids), 1)
            comp_t += _median_s(lambda: torch_pc.compress(text, rate=0.25), 1)
            comp_o += _median_s(lambda: onnx_pc.compress(text, rate=0.25), 1)
        size_mb = record["scorer"]["size_mb"]
    med = {k: statistics.median(v) for k, v in
           {"score_torch": score_t, "score_onnx": score_o, "compress_torch": comp_t, "compress_onnx": comp_o}.items()}
    result = {"tokens": ids.shape[1], "threads": args.threads, "runs": args.runs,
              "spec": {"layer": spec.layer, "heads": spec.heads, "n_o": spec.n_o, "kernel": spec.kernel},
              "scores_max_abs_diff": float((got - expected).abs().max()), "kept": kept,
              "gate": record["scorer"]["parity"]["summary"], "export_s": round(export_s, 1), "size_mb": size_mb,
              "median_s": {k: round(v, 4) for k, v in med.items()},
              "speedup": {"score": round(med["score_torch"] / med["score_onnx"], 2),
                          "compress": round(med["compress_torch"] / med["compress_onnx"], 2)}}
    print(f"EHPC scorer, SmolLM2 layers 0..{spec.layer}, {result['tokens']} tokens, {args.threads} thread(s), "
          f"median of {args.runs}")
    print(f"{'':10}{'score s':>10}{'compress s':>12}")
    print(f"{'torch':10}{med['score_torch']:>10.3f}{med['compress_torch']:>12.3f}")
    print(f"{'onnxrt':10}{med['score_onnx']:>10.3f}{med['compress_onnx']:>12.3f}")
    print(f"speed-up: score {result['speedup']['score']}x, compress {result['speedup']['compress']}x; scores max diff "
          f"{result['scores_max_abs_diff']:.2g}; kept text identical at rates "
          f"{[r for r, v in kept.items() if v['identical']]}; scorer.onnx {size_mb} MB, export {export_s:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
