"""The EHPC scorer's cost against one full forward of the model, before and after the cheap evaluator layer.

    .venv/bin/python benchmarks/ehpc_scorer.py                       # 2k / 4k / 8k tokens, bundled SmolLM2
    .venv/bin/python benchmarks/ehpc_scorer.py --lengths 2048 --json scorer.json

Three ways to get the same prompt through the model, each in its own fresh process (so each peak is its own):
- forward: the whole model (SDPA, logits for the last position only, as a prefill computes them);
- stock:   the scorer with the stock eager attention module at L* (every query row, n x n weights per head);
- cheap:   the scorer as shipped (`observation_rows`: the last N_o query rows of the evaluator heads only).
Time is the best of --repeats after one warm-up; memory is the process's peak RSS (VmHWM) minus its RSS
once loaded. EHPC's goal (issue 21): cheap <= L*/N + 0.05 of the forward.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _prompt_ids(tokenizer, n: int):
    import torch

    from compressor.prompt.probes import paragraphs

    text, ids = "", []
    for paragraph in paragraphs() * 50:
        text += paragraph + "\n\n"
        if len(text) > 6 * n:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) >= n:
                break
    return torch.tensor([ids[:n]])


def child(folder: str, mode: str, n: int, repeats: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.prompt.scorer import load_scorer
    from compressor.prompt.spec import read_spec, spec_folder

    model_dir = spec_folder(Path(folder))
    spec = read_spec(folder)
    ids = _prompt_ids(AutoTokenizer.from_pretrained(model_dir), n)
    if mode == "forward":
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
        # with the tokenizer's all-ones attention_mask, as a prefill gets it: transformers then lets SDPA run
        # is_causal (no mask); without one it builds an explicit n x n mask and SDPA takes a slower kernel
        mask = torch.ones_like(ids)
        run = lambda: model(ids, attention_mask=mask, logits_to_keep=1, use_cache=False)  # noqa: E731
        layers = model.config.num_hidden_layers
    else:
        scorer = load_scorer(model_dir, spec)
        layers = scorer.config.num_hidden_layers
        if mode == "stock":
            run = lambda: scorer.pool(scorer.attention_rows_stock(ids).mean(1).sum(0)[None, None])  # noqa: E731
        else:
            run = lambda: scorer(ids)  # noqa: E731
    loaded_kb = _status_kb("VmRSS")
    times = []
    with torch.no_grad():
        run()
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
    return {"mode": mode, "tokens": int(ids.shape[1]), "seconds": min(times), "layer": spec.layer,
            "layers": layers, "peak_extra_mb": (_status_kb("VmHWM") - loaded_kb) / 1024,
            "threads": torch.get_num_threads()}


def measure(folder: Path, mode: str, n: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), mode, str(n), str(repeats)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ehpc-dir", default=None, help="folder with prompt_compressor.json (default: discovered "
                                                         "once on the bundled SmolLM2, as benchmarks/ehpc.py)")
    parser.add_argument("--probe-tokens", type=int, default=2048)
    parser.add_argument("--lengths", default="2048,4096,8192")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", dest="json_file", default=None)
    parser.add_argument("--child", nargs=4, metavar=("FOLDER", "MODE", "N", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, mode, n, repeats = args.child
        print(json.dumps(child(folder, mode, int(n), int(repeats))))
        return

    from ehpc import ehpc_folder

    progress = lambda m: print(f"• {m}", file=sys.stderr, flush=True)  # noqa: E731
    folder = ehpc_folder(args.ehpc_dir, args.probe_tokens, progress)
    rows = []
    for n in (int(x) for x in args.lengths.split(",")):
        for mode in ("forward", "stock", "cheap"):
            progress(f"{mode} at {n} tokens")
            rows.append(measure(folder, mode, n, args.repeats))
    layer, layers = rows[0]["layer"], rows[0]["layers"]
    goal = layer / layers + 0.05
    print(f"evaluator layer L* = {layer} of N = {layers} (L*/N = {layer / layers:.3f}); "
          f"goal: scorer <= {goal:.3f} of a forward; torch threads {rows[0]['threads']}")
    print("| tokens | forward s | stock scorer s | cheap scorer s | stock / forward | cheap / forward | "
          "peak extra MB forward / stock / cheap |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    table = []
    for n in sorted({r["tokens"] for r in rows}):
        by = {r["mode"]: r for r in rows if r["tokens"] == n}
        entry = {"tokens": n, **{f"{m}_s": by[m]["seconds"] for m in by},
                 **{f"{m}_peak_extra_mb": by[m]["peak_extra_mb"] for m in by},
                 "stock_ratio": by["stock"]["seconds"] / by["forward"]["seconds"],
                 "cheap_ratio": by["cheap"]["seconds"] / by["forward"]["seconds"]}
        entry["goal_met"] = entry["cheap_ratio"] <= goal
        table.append(entry)
        print(f"| {n:,} | {entry['forward_s']:.3f} | {entry['stock_s']:.3f} | {entry['cheap_s']:.3f} | "
              f"{entry['stock_ratio']:.3f} | {entry['cheap_ratio']:.3f} | {entry['forward_peak_extra_mb']:,.0f} / "
              f"{entry['stock_peak_extra_mb']:,.0f} / {entry['cheap_peak_extra_mb']:,.0f} |")
    print(f"goal (cheap <= {goal:.3f} of a forward): "
          f"{'met' if all(e['goal_met'] for e in table) else 'NOT met'} at "
          f"{', '.join(str(e['tokens']) for e in table if e['goal_met']) or 'no length'}")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"layer": layer, "layers": layers, "goal": goal, "table": table,
                                                    "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
