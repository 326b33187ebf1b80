"""Every quantization scheme on SmolLM2, judged in one run against the bf16 source (not a test).

    .venv/bin/python benchmarks/quantization.py [--quick] [--runtime vllm|torch] [--schemes w8a8,fp8-dynamic]
                                               [--out out/bench-quantization] [--model builtin:smollm2-135m]

The source is cast to bf16 first (recipes/bf16.yaml); each scheme is applied to the fp32 source and
measured with the project's judge (compressor.evaluate.judge) against that bf16 folder in the same
runtime: size MB, word perplexity, Perf, time per output token, PerfNorm, SpeedNorm, Score. The bf16
baseline is measured once and reused for every row. FP8 has no CPU kernels: vLLM's CPU build emulates
it, and that row shows how slowly. The bitsandbytes schemes are attempted too (`--schemes llm-int8,nf4`);
a runtime that cannot serve one gets its error in the table instead of numbers.

--quick: the `quick` suite, 64 new tokens x 3 timed runs, GPTQ calibrated on 16 x 256 tokens (smoke
numbers; the full run uses the default suite, 128 x 5 and 64 x 512). Writes OUT/results.json and prints a table.
"""

import argparse
import json
import sys
import time
from pathlib import Path

SCHEMES = {
    "w8a8": {"scheme": "w8a8-int8"},
    "w8a8-sq-gptq": {"scheme": "w8a8-int8", "method": "gptq", "smoothquant": 0.8},
    "fp8-dynamic": {"scheme": "fp8-dynamic"},
    "fp8": {"scheme": "fp8"},
    "w8a16": {"scheme": "w8a16"},
    "w4a16-g64": {"scheme": "w4a16", "group_size": 64, "method": "gptq"},
    "llm-int8": {"scheme": "llm-int8", "backend": "bitsandbytes"},
    "nf4": {"scheme": "nf4", "backend": "bitsandbytes"},
}
DEFAULT = ["w8a8", "w8a8-sq-gptq", "fp8-dynamic", "fp8", "w8a16", "w4a16-g64"]
COLUMNS = ("scheme", "size MB", "word ppl", "Perf", "ms/token", "PerfNorm", "SpeedNorm", "Score", "apply s")


def apply(model_id: str, name: str, stages: list[dict], out: Path) -> dict:
    from compressor.pipeline import apply_recipe
    from compressor.recipe import parse_recipe

    recipe = parse_recipe({"name": name, "model": model_id, "stages": stages, "eval": {"enabled": False}})
    return apply_recipe(recipe, f"benchmarks/quantization.py:{name}", out_dir=out, force=True, evaluate=False)


def word_ppl(measurement: dict):
    ppl = measurement.get("tasks", {}).get("corpus_ppl", {})
    return next((v for k, v in ppl.items() if k.split(",")[0] == "word_perplexity"), None)


def row(name: str, size_mb: float, apply_s: float | None, ev: dict, which: str = "model") -> dict:
    m = ev[which]
    baseline = which == "baseline"
    return {"scheme": name, "size_mb": round(size_mb, 1), "word_ppl": word_ppl(m), "perf": m["perf"],
            "tpt_ms": m["tpt_ms"], "perf_norm": 1.0 if baseline else ev["perf_norm"],
            "speed_norm": 0.0 if baseline else ev["speed_norm"], "score": 0.5 if baseline else ev["score"],
            "apply_s": apply_s, "runtime_dtype": m.get("dtype")}


def table(rows: list[dict]) -> str:
    def fmt(value, digits):
        return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['scheme']} | {fmt(r.get('size_mb'), 1)} | failed: {r['error'][:120]} |")
            continue
        lines.append("| " + " | ".join([r["scheme"], fmt(r["size_mb"], 1), fmt(r["word_ppl"], 2), fmt(r["perf"], 3),
                                        fmt(r["tpt_ms"], 2), fmt(r["perf_norm"], 3), fmt(r["speed_norm"], 3),
                                        fmt(r["score"], 3), fmt(r["apply_s"], 1)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runtime", choices=["vllm", "torch"], default="vllm")
    parser.add_argument("--schemes", default=",".join(DEFAULT), help=f"comma-separated, from {', '.join(SCHEMES)}")
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--out", type=Path, default=Path("out/bench-quantization"))
    args = parser.parse_args()
    names = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCHEMES]
    if unknown:
        parser.error(f"unknown schemes {unknown}; known: {', '.join(SCHEMES)}")

    from compressor.evaluate.judge import judge
    from compressor.core.files import folder_size_mb
    from compressor.models.sources import pick_device
    from compressor.evaluate.spec import EvalSpec

    latency = {"prompt_tokens": 256, "new_tokens": 64 if args.quick else 128, "runs": 3 if args.quick else 5}
    spec = EvalSpec(runtime=args.runtime, suite="quick" if args.quick else "default", latency=latency)
    calibration = {"samples": 16, "seq_len": 256} if args.quick else {"samples": 64, "seq_len": 512}
    device = pick_device("cpu")

    def progress(message):
        print(f"  {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    rows, baseline_row = [], None

    def save() -> list[dict]:
        all_rows = ([baseline_row] if baseline_row else []) + rows
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(
            {"runtime": args.runtime, "quick": args.quick, "suite": spec.suite, "latency": latency,
             "calibration": calibration, "model": args.model, "seconds": round(time.perf_counter() - started, 1),
             "rows": all_rows}, indent=2, default=str) + "\n")
        return all_rows

    base_dir = args.out / "bf16"
    print(f"bf16 source -> {base_dir}", file=sys.stderr)
    apply(args.model, "bf16", [{"stage": "cast", "dtype": "bfloat16"}], base_dir)
    for name in names:
        stage = {"stage": "quantize", **SCHEMES[name]}
        if stage.get("method") == "gptq" or stage["scheme"] == "fp8" or "smoothquant" in stage:
            stage["calibration"] = calibration
        out = args.out / name
        print(f"{name}: {json.dumps(stage)} -> {out}", file=sys.stderr)
        t0 = time.perf_counter()
        size = None
        try:
            report = apply(args.model, name, [stage], out)
            apply_s = time.perf_counter() - t0
            size = folder_size_mb(out / "model")
            ev = judge(out / "model", base_dir / "model", spec, device, progress)
        except Exception as error:  # a runtime that cannot serve a format: recorded, not hidden
            message = " ".join(f"{type(error).__name__}: {error}".split())
            rows.append({"scheme": name, "size_mb": size, "error": message})
            print(f"  failed: {rows[-1]['error'][:300]}", file=sys.stderr)
            save()
            continue
        if baseline_row is None:
            baseline_row = row("bf16 (baseline)", folder_size_mb(base_dir / "model"), None, ev, "baseline")
        rows.append(row(name, size, round(apply_s, 1), ev) | {"note": report["stages"][0]["result"].get("note")})
        save()  # after every row: a long run leaves what it measured
    all_rows = save()
    print(f"\n{args.model} in {args.runtime}, suite {spec.suite}, {latency['new_tokens']} new tokens x "
          f"{latency['runs']} runs (median); Perf / Score against the bf16 source measured in this run\n")
    print(table(all_rows))
    print(f"\n{time.perf_counter() - started:.0f} s; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
