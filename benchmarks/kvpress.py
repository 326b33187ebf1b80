"""KV presses at long context on the bundled SmolLM2: perplexity increase, decode ms/token, peak memory.

    python benchmarks/kvpress.py            # 4096 tokens, every press, window ablation + plot
    python benchmarks/kvpress.py --quick    # 1024 tokens, fewer points (a smoke run)

Each press is measured by compressor.evaluate.kv.long_context (teacher-forced ppl with the cache compressed
after every chunk, then greedy decoding at full cache) in its own fresh process, so the process's peak
RSS rise belongs to that press alone. Ratios are against "none" measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# `python benchmarks/kvpress.py` puts benchmarks/ first on sys.path, where this file would shadow the
# kvpress package itself.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

PRESSES = [
    {"press": "none"},
    {"press": "streaming_llm", "n_sink": 4, "window": 1024},
    {"press": "snapkv", "ratio": 0.5},
    {"press": "knorm", "ratio": 0.5},
    {"press": "expected_attention", "ratio": 0.5},
]
WINDOWS = [64, 128, 256, 512, 1024, 2048]


def one(model_id: str, press: dict, tokens: int, chunk: int, decode_tokens: int, threads: int | None) -> dict:
    """Run in a child process: load the model, measure one press, return its long-context result."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from compressor.evaluate.kv.spec import KVPressSpec, LongContextSpec
    from compressor.evaluate.kv.long_context import measure_long_context
    from compressor.models.sources import load_model, resolve_source

    model, tokenizer = load_model(resolve_source(model_id).path, torch.device("cpu"))
    spec = LongContextSpec(tokens=tokens, chunk=chunk, decode_tokens=decode_tokens)
    return measure_long_context(model, tokenizer, KVPressSpec(**press), spec)


def run_child(args, press: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(press), "--model", args.model, "--tokens", str(args.tokens),
           "--chunk", str(args.chunk), "--decode-tokens", str(args.decode_tokens)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{press}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    none = rows[0]
    lines = ["| press | ppl | ppl increase | ppl last half | cache positions | KV cache MB | KV ratio | "
             "decode ms/token | tok/s | peak RSS rise MB | peak ratio |", "|" + "---|" * 11]
    for r in rows:
        peak_ratio = r["peak_memory_mb"] / none["peak_memory_mb"] if none["peak_memory_mb"] else None
        lines.append(f"| {r['press']} | {r['ppl']:.2f} | {r['ppl'] / none['ppl'] - 1:+.1%} | {r['ppl_last_half']:.2f} | "
                     f"{r['cache_positions_after_prefill']} | {r['kv_cache_mb_peak']:.1f} | "
                     f"{r['kv_cache_mb_peak'] / none['kv_cache_mb_peak']:.2f} | {r['decode_ms_per_token']:.1f} | "
                     f"{r['generation_tok_per_s']:.1f} | {r['peak_memory_mb']:.0f} | "
                     + (f"{peak_ratio:.2f} |" if peak_ratio is not None else "– |"))
    return "\n".join(lines)


def plot(windows: list[tuple[int, float]], none_ppl: float, tokens: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    xs, ys = zip(*windows)
    ax.plot(xs, ys, marker="o", label="streaming_llm (4 sinks)")
    ax.axhline(none_ppl, color="#999999", linestyle="--", label="no press")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("window (positions kept besides the sinks)")
    ax.set_ylabel("perplexity")
    ax.set_title(f"SmolLM2-135M, {tokens} tokens: perplexity vs window", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="1024 tokens, windows 64 and 256, 8 decoded tokens")
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/kvpress_window.png"))
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)),
                        help="streaming_llm windows for the ablation plot (comma-separated)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 keeps timings stable on a busy machine; default: torch's)")
    parser.add_argument("--json", action="store_true", help="print every result as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.model, json.loads(args.child), args.tokens, args.chunk, args.decode_tokens,
                             args.threads)))
        return
    windows = [int(w) for w in args.windows.split(",")]
    presses = [dict(p) for p in PRESSES]
    if args.quick:
        args.tokens, args.decode_tokens, windows = 1024, 8, [64, 256]
        presses[1]["window"] = 256
    rows = []
    for press in presses:
        print(f"measuring {press} on {args.tokens} tokens", file=sys.stderr, flush=True)
        rows.append(run_child(args, press))
    ablation = [(presses[1]["window"], rows[1]["ppl"])]
    for window in windows:
        if window == presses[1]["window"]:
            continue
        print(f"measuring streaming_llm window {window}", file=sys.stderr, flush=True)
        ablation.append((window, run_child(args, {**presses[1], "window": window})["ppl"]))
    ablation.sort()
    plot(ablation, rows[0]["ppl"], args.tokens, args.plot)
    print(table(rows))
    print("\nstreaming_llm (4 sinks) perplexity by window: "
          + ", ".join(f"{w}: {p:.2f}" for w, p in ablation) + f" (no press {rows[0]['ppl']:.2f}); plot {args.plot}")
    if args.json:
        print(json.dumps({"rows": rows, "window_ablation": ablation}, indent=2))


if __name__ == "__main__":
    main()
