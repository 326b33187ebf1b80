"""Compression latency of EHPC vs LLMLingua vs LongLLMLingua per dtype of the scoring model, side by side.

    .venv/bin/python benchmarks/ehpc_latency.py                          # float32 and bfloat16, 6 prompts, rate 1/4
    .venv/bin/python benchmarks/ehpc_latency.py --dtypes float32 --rates 0.5,0.25,0.1 --json lat.json

benchmarks/ehpc.py measures accuracy (and latency in float32); this one measures only the `compress`
call, for each method in each dtype, on the same RULER-style prompts (scripts/make_ehpc_tasks.py),
calls interleaved so load on the machine falls on all of them alike. EHPC (arXiv 2501.12959) runs
layers 0..L* once; LLMLingua (arXiv 2310.05736) and LongLLMLingua (arXiv 2310.06839) run the whole
model, the latter question-aware. Every method of a dtype runs in that dtype, so each speedup is like
for like. For EHPC in a lower precision it also reports how many kept words match the float32 EHPC's
(Jaccard of the kept word sets) and whether the answer survived.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

METHODS = ("ehpc", "llmlingua", "longllmlingua")


def jaccard(a: str, b: str) -> float:
    left, right = set(a.split()), set(b.split())
    return len(left & right) / max(1, len(left | right))


def summarize(rows: list[dict], methods, dtypes, rates) -> dict:
    table = {}
    for dtype in dtypes:
        for rate in rates:
            cell = {}
            for method in methods:
                sel = [r for r in rows if r["method"] == method and r["dtype"] == dtype and r["rate"] == rate]
                if sel:
                    cell[method] = {"latency_s_mean": statistics.mean(r["seconds"] for r in sel),
                                    "latency_s_median": statistics.median(r["seconds"] for r in sel),
                                    "answer_kept": statistics.mean(r["answer_kept"] for r in sel),
                                    "kept_ratio": statistics.mean(r["tokens_out"] / r["tokens_in"] for r in sel)}
                    jac = [r["jaccard_vs_float32"] for r in sel if "jaccard_vs_float32" in r]
                    if jac:
                        cell[method]["jaccard_vs_float32_mean"] = statistics.mean(jac)
            if "ehpc" in cell:
                for method in methods:
                    if method != "ehpc" and method in cell:
                        cell[method]["ehpc_speedup"] = cell[method]["latency_s_mean"] / cell["ehpc"]["latency_s_mean"]
            table[f"{dtype}@{rate}"] = cell
    return table


def render(table: dict, methods) -> str:
    lines = ["| dtype | rate | method | latency mean (s) | EHPC faster by | answer kept | kept words = float32 EHPC's |",
             "|---|---|---|---|---|---|---|"]
    for key, cell in table.items():
        dtype, rate = key.split("@")
        for method in methods:
            row = cell.get(method)
            if row:
                speed = f"{row['ehpc_speedup']:.1f}x" if "ehpc_speedup" in row else "-"
                jac = f"{row['jaccard_vs_float32_mean']:.3f}" if "jaccard_vs_float32_mean" in row else "-"
                lines.append(f"| {dtype} | {rate} | {method} | {row['latency_s_mean']:.2f} | {speed} | "
                             f"{row['answer_kept']:.2f} | {jac} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ehpc-dir", default=None, help="output or model folder with prompt_compressor.json")
    parser.add_argument("--per-kind", type=int, default=2)
    parser.add_argument("--min-tokens", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--probe-tokens", type=int, default=2048, help="discovery probe length (no --ehpc-dir)")
    parser.add_argument("--rates", default="0.25")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_file", default=None)
    args = parser.parse_args()
    rates = tuple(float(r) for r in args.rates.split(","))
    methods = tuple(args.methods.split(","))
    dtypes = tuple(args.dtypes.split(","))

    import torch
    from transformers import AutoTokenizer

    from ehpc import _tasks_module, ehpc_folder
    from compressor.prompt.commands import load_compressor
    from compressor.prompt.spec import read_spec, spec_folder

    progress = lambda m: print(f"• {m}", file=sys.stderr, flush=True)  # noqa: E731
    folder = ehpc_folder(args.ehpc_dir, args.probe_tokens, progress)
    spec = read_spec(folder)
    tokenizer = AutoTokenizer.from_pretrained(spec_folder(folder))
    items = _tasks_module().make_tasks(tokenizer, args.per_kind, args.min_tokens, args.max_tokens, args.seed)
    compressors = {}
    for dtype in dtypes:
        for method in methods:
            progress(f"loading {method} in {dtype}")
            compressors[(method, dtype)] = load_compressor(folder, method, dtype=dtype)
    first = items[0]
    for compressor in compressors.values():  # warm-up: first calls pay one-off allocations
        compressor.compress(first["context"][:2000], rate=0.5, question=first["question"])

    rows = []
    for number, item in enumerate(items, 1):
        progress(f"item {number}/{len(items)} {item['id']} ({item['n_tokens']} tokens)")
        for rate in rates:
            reference = None
            for (method, dtype), compressor in compressors.items():
                result = compressor.compress(item["context"], rate=rate, question=item["question"])
                row = {"id": item["id"], "n_tokens": item["n_tokens"], "method": method, "dtype": dtype, "rate": rate,
                       "seconds": result.seconds, "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                       "answer_kept": item["answer"] in result.context}
                if method == "ehpc" and dtype == "float32":
                    reference = result.context
                elif method == "ehpc" and reference is not None:
                    row["jaccard_vs_float32"] = jaccard(result.context, reference)
                rows.append(row)
    table = summarize(rows, methods, dtypes, rates)
    print(f"SmolLM2 evaluator layer {spec.layer}; {len(items)} prompts of {min(i['n_tokens'] for i in items)}-"
          f"{max(i['n_tokens'] for i in items)} tokens; torch threads {torch.get_num_threads()}")
    print(render(table, methods))
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"table": table, "rows": rows, "items": len(items),
                                                    "torch_threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
