"""EHPC (arXiv 2501.12959) vs LLMLingua vs LongLLMLingua vs random-keep vs keep-the-ends on synthetic long-context retrieval.

    .venv/bin/python benchmarks/ehpc.py --quick                 # 1 item per kind, 1k-1.5k tokens
    .venv/bin/python benchmarks/ehpc.py --per-kind 10           # 30 items, 1k-4k tokens (slow on a CPU)
    .venv/bin/python benchmarks/ehpc.py --per-kind 5 --language both   # 15 English + 15 Korean items
    .venv/bin/python benchmarks/ehpc.py --per-kind 1 --language both --methods ehpc,ehpc+passages --rates 0.25
    .venv/bin/python benchmarks/ehpc.py --ehpc-dir out/ehpc --json results.json
    .venv/bin/python benchmarks/ehpc.py --ehpc-dir out/l20 --ehpc-dir out/l13 --methods ehpc,llmlingua  # L* side by side

Tasks come from scripts/make_ehpc_tasks.py (RULER-style single needle, multi-key needle, passkey in
real-text filler; seeded, generated at run time). SmolLM2-135M answers every prompt greedily, the
question before and after the context and the answer primed (what works for this small model); an
item is right when the answer string appears in the first 12 generated tokens. Each compressor gets
the context with the question appended (protected) and a budget of rate x its tokens, at rates 1/2,
1/4, 1/10; its compression latency is the wall time of each `compress` call. Without --ehpc-dir the
evaluator heads are discovered once on the bundled SmolLM2 (cached under $COMPRESSOR_HOME/bench).
"ehpc+passages" is EHPC with `coarse="passages", reorder=True` (LongLLMLingua's coarse-to-fine over EHPC's
scores, compressor/prompt/passages.py), "ehpc+passages-inorder" the same without reordering. Korean items
(`--language ko|both`) are asked in Korean, the question before and after the context, "답:" and the
answer prefix primed. Prints per language accuracy per method and rate, kept-token ratios, median
latency, and the goal: EHPC (with or without passages) >= LongLLMLingua's accuracy at every rate at
>= 5x its speed. With several --ehpc-dir (e.g. discovered with different --max-layer) each is its own
method, "ehpc-L<L*>" (and "ehpc-L<L*>+passages").
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RATES = (0.5, 0.25, 0.1)
METHODS = ("ehpc", "ehpc+passages", "llmlingua", "longllmlingua", "random", "ends")
BASELINES = ("llmlingua", "longllmlingua")  # compared side by side
GOAL_BASELINE, SPEED_GOAL = "longllmlingua", 5.0  # the goal: EHPC as accurate at every rate, >= 5x faster
LANGUAGES = ("en", "ko")
PASSAGE_VARIANTS = {"+passages": {"coarse": "passages", "reorder": True},
                    "+passages-inorder": {"coarse": "passages", "reorder": False}}
ANSWER_CUE = {"en": "Answer:", "ko": "답:"}


def _tasks_module():
    spec = importlib.util.spec_from_file_location("make_ehpc_tasks", REPO / "scripts" / "make_ehpc_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ehpc_folder(given: str | None, probe_tokens: int, progress) -> Path:
    """The folder with prompt_compressor.json: given, or discovered once on the bundled SmolLM2."""
    if given:
        return Path(given)
    from compressor.models.builtin import materialize_builtin
    from compressor.core.paths import compressor_home
    from compressor.prompt.commands import discover_folder
    from compressor.core.layout import PROMPT_SPEC_FILE as SPEC_FILE
    from compressor.prompt.stage import EvaluatorHeadsParams

    out = compressor_home() / "bench" / f"ehpc-smollm2-{probe_tokens}"
    if not (out / "model" / SPEC_FILE).is_file():
        params = EvaluatorHeadsParams(stage="evaluator_heads", probe_tokens=probe_tokens)
        discover_folder(materialize_builtin("smollm2-135m"), params, out=out, force=True, device="cpu",
                        progress=progress)
    return out


def prompt_for(item: dict, context: str) -> str:
    q = item["question"]
    return f"{q}\n\n{context}\n\n{q}\n{ANSWER_CUE[item.get('language', 'en')]} {item['answer_prefix']}"


def answer_correct(model, tokenizer, item: dict, context: str, new_tokens: int = 12) -> tuple[bool, str]:
    import torch

    enc = tokenizer(prompt_for(item, context), return_tensors="pt", add_special_tokens=False)
    ids = enc["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=enc["attention_mask"], max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return item["answer"] in text, text


def scorer_vs_full_model(model, tokenizer, ehpc, item: dict) -> dict:
    """Wall time of the EHPC scorer (layers 0..L*) and of the full model's forward on the same ids (best of 2)."""
    import torch

    enc = tokenizer(item["context"] + "\n\n" + item["question"], return_tensors="pt", add_special_tokens=False)
    ids = enc["input_ids"]
    best = {}
    # the forward as a prefill runs it (as benchmarks/ehpc_scorer.py): the tokenizer's mask (without one SDPA
    # leaves its causal kernel) and logits for the last position only
    forward = lambda: model(input_ids=ids, attention_mask=enc["attention_mask"], logits_to_keep=1,  # noqa: E731
                            use_cache=False)
    for name, run in (("scorer_s", lambda: ehpc.token_scores(ids)), ("full_forward_s", forward)):
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            with torch.no_grad():
                run()
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    return {"tokens": ids.shape[1], **best, "ratio": best["scorer_s"] / best["full_forward_s"]}


def variant(method: str) -> tuple[str, dict]:
    """(the compressor's label, the `compress` options): "ehpc-L7+passages" -> ("ehpc-L7", {coarse, reorder})."""
    for suffix, options in PASSAGE_VARIANTS.items():
        if method.endswith(suffix):
            return method.removesuffix(suffix), options
    return method, {}


def load_methods(methods, folder_of: dict, default: Path, progress) -> dict:
    """Each method's compressor and options; an EHPC label ("ehpc", "ehpc-L7") loads EHPC from its own folder,
    once for its passage variants too."""
    from compressor.prompt.commands import load_compressor

    compressors, loaded = {}, {}
    for method in methods:
        base, options = variant(method)
        if base not in compressors:
            progress(f"loading {base}")
            compressors[base] = load_compressor(folder_of.get(base, default), "ehpc" if is_ehpc(base) else base)
        loaded[method] = (compressors[base], options)
    return loaded


def expand_ehpc(methods, labels) -> tuple:
    """"ehpc" and "ehpc+passages" stand for every EHPC folder's label ("ehpc-L20", "ehpc-L20+passages", ...)."""
    out = []
    for method in methods:
        base, _ = variant(method)
        out += [label + method.removeprefix(base) for label in labels] if base == "ehpc" else [method]
    return tuple(out)


def by_kind(rows: list[dict]) -> dict:
    kinds = sorted({r["kind"] for r in rows})
    return {kind: statistics.mean(r["correct"] for r in rows if r["kind"] == kind) for kind in kinds}


def is_ehpc(method: str) -> bool:
    base = variant(method)[0]
    return base == "ehpc" or base.startswith("ehpc-L")


def summarize(rows: list[dict], methods, rates) -> dict:
    plain = [r for r in rows if r["method"] == "none"]
    table = {"uncompressed": {"accuracy": statistics.mean(r["correct"] for r in plain), "by_kind": by_kind(plain)}}
    for method in methods:
        for rate in rates:
            sel = [r for r in rows if r["method"] == method and r["rate"] == rate]
            if not sel:
                continue
            table[f"{method}@{rate}"] = {
                "method": method, "rate": rate, "items": len(sel),
                "accuracy": statistics.mean(r["correct"] for r in sel),
                "by_kind": by_kind(sel),
                "kept_ratio": statistics.mean(r["tokens_out"] / r["tokens_in"] for r in sel),
                "answer_kept": statistics.mean(r["answer_kept"] for r in sel),
                "latency_s_median": statistics.median(r["seconds"] for r in sel),
                "latency_s_mean": statistics.mean(r["seconds"] for r in sel),
            }
    goals = {}
    for ehpc, baseline in ((e, b) for e in methods if is_ehpc(e) for b in BASELINES if b in methods):
        for rate in rates:
            e, l = table.get(f"{ehpc}@{rate}"), table.get(f"{baseline}@{rate}")
            if e and l:
                goals[f"{ehpc} vs {baseline} rate {rate}"] = {
                    "ehpc": ehpc, "baseline": baseline, "rate": rate, "ehpc_acc": e["accuracy"],
                    "baseline_acc": l["accuracy"],
                    "accuracy_goal_met": e["accuracy"] >= l["accuracy"],
                    "speedup": l["latency_s_mean"] / e["latency_s_mean"],
                    "speed_goal_met": l["latency_s_mean"] >= SPEED_GOAL * e["latency_s_mean"]}
    return {"table": table, "goals": goals, "goal": goal_verdict(goals, methods, rates)}


def goal_verdict(goals: dict, methods, rates) -> dict | None:
    """Met when one EHPC variant is >= LongLLMLingua's accuracy at every rate and >= SPEED_GOAL x faster at each."""
    variants = {}
    for ehpc in (m for m in methods if is_ehpc(m)):
        rows = [goals.get(f"{ehpc} vs {GOAL_BASELINE} rate {rate}") for rate in rates]
        if all(rows):
            variants[ehpc] = all(r["accuracy_goal_met"] and r["speed_goal_met"] for r in rows)
    if not variants:
        return None
    return {"baseline": GOAL_BASELINE, "speed": SPEED_GOAL, "variants": variants, "met": any(variants.values())}


def summarize_languages(rows: list[dict], methods, rates) -> dict:
    """`summarize` per language of the items (rows without one are English: runs before Korean items)."""
    present = [lang for lang in LANGUAGES if any(r.get("language", "en") == lang for r in rows)]
    return {lang: summarize([r for r in rows if r.get("language", "en") == lang], methods, rates) for lang in present}


def _kinds(row: dict) -> str:
    return " / ".join(f"{acc:.2f}" for acc in row["by_kind"].values())


def render(summary: dict, methods, rates) -> str:
    plain = summary["table"]["uncompressed"]
    kinds = list(plain["by_kind"])
    lines = [f"uncompressed accuracy {plain['accuracy']:.3f} ({_kinds(plain)} by kind: {', '.join(kinds)})", "",
             f"| method | rate | accuracy | {' / '.join(kinds)} | answer still in the context | kept tokens | "
             f"latency median (s) |", "|---|---|---|---|---|---|---|"]
    for method in methods:
        for rate in rates:
            row = summary["table"].get(f"{method}@{rate}")
            if row:
                lines.append(f"| {method} | {rate} | {row['accuracy']:.3f} | {_kinds(row)} | {row['answer_kept']:.2f} | "
                             f"{row['kept_ratio']:.3f} | {row['latency_s_median']:.3f} |")
    for goal in summary["goals"].values():
        lines.append(f"{goal['ehpc']} vs {goal['baseline']} rate {goal['rate']}: "
                     f"accuracy {goal['ehpc_acc']:.3f} vs {goal['baseline_acc']:.3f}, "
                     f"EHPC {goal['speedup']:.1f}x faster")
    goal = (f"GOAL (EHPC, with or without passages, >= {GOAL_BASELINE}'s accuracy at every rate at "
            f">= {SPEED_GOAL:g}x its speed)")
    verdict = summary.get("goal")
    if verdict:
        each = ", ".join(f"{v} {'met' if ok else 'not met'}" for v, ok in verdict["variants"].items())
        lines.append(f"{goal}: {'met' if verdict['met'] else 'NOT met'} ({each})")
    else:
        lines.append(f"{goal}: not measured (needs {GOAL_BASELINE} and an EHPC method in --methods)")
    return "\n".join(lines)


def render_languages(summaries: dict, methods, rates) -> str:
    if list(summaries) == ["en"]:
        return render(summaries["en"], methods, rates)
    names = {"en": "English", "ko": "Korean"}
    return "\n\n".join(f"## {names[lang]}\n\n{render(summary, methods, rates)}" for lang, summary in summaries.items())


def summarize_file(path: Path) -> tuple[dict, tuple, tuple]:
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)["rows"]  # a --json file
    except json.JSONDecodeError:  # a --rows file: one JSON object per line
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    methods = tuple(dict.fromkeys(r["method"] for r in rows if r["method"] != "none"))
    rates = tuple(dict.fromkeys(r["rate"] for r in rows if r["method"] != "none"))
    return summarize_languages(rows, methods, rates), methods, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ehpc-dir", action="append", default=None,
                        help="output or model folder with prompt_compressor.json (repeat to compare several)")
    parser.add_argument("--quick", action="store_true", help="1 item per kind, 1k-1.5k tokens")
    parser.add_argument("--per-kind", type=int, default=10)
    parser.add_argument("--min-tokens", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--probe-tokens", type=int, default=2048, help="discovery probe length (no --ehpc-dir)")
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--language", choices=(*LANGUAGES, "both"), default="en",
                        help="English items, Korean items, or both (the same number of each) in one run")
    parser.add_argument("--json", dest="json_file", default=None, help="write every row and the summary here")
    parser.add_argument("--rows", dest="rows_file", default=None,
                        help="append each row to this JSONL file as it is measured (inspect long runs early)")
    parser.add_argument("--summarize", default=None, metavar="FILE",
                        help="print the tables of an earlier run (its --rows JSONL or --json file); runs nothing")
    args = parser.parse_args()
    if args.summarize:
        print(render_languages(*summarize_file(Path(args.summarize))))
        return
    if args.quick:
        args.per_kind, args.min_tokens, args.max_tokens, args.probe_tokens = 1, 1024, 1536, 1024
    rates = tuple(float(r) for r in args.rates.split(","))
    methods = tuple(args.methods.split(","))

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.prompt.spec import read_spec, spec_folder

    progress = lambda m: print(f"• {m}", file=sys.stderr, flush=True)  # noqa: E731
    folders = [ehpc_folder(given, args.probe_tokens, progress) for given in (args.ehpc_dir or [None])]
    folder = folders[0]
    model_dir = spec_folder(folder)
    specs = {}  # EHPC method label -> spec
    for one in folders:
        spec = read_spec(one)
        specs[f"ehpc-L{spec.layer}" if len(folders) > 1 else "ehpc"] = spec
        progress(f"evaluator heads of {one}: layer {spec.layer} of {spec.model.num_hidden_layers}, heads {spec.heads}, "
                 f"N_o {spec.n_o}, kernel {spec.kernel}")
    if len(specs) < len(folders):
        sys.exit("error: two --ehpc-dir folders have the same evaluator layer; give folders with different L*")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    languages = LANGUAGES if args.language == "both" else (args.language,)
    tasks = _tasks_module()
    items = [item for language in languages
             for item in tasks.make_tasks(tokenizer, args.per_kind, args.min_tokens, args.max_tokens, args.seed,
                                          language=language)]
    methods = expand_ehpc(methods, tuple(specs))
    compressors = load_methods(methods, dict(zip(specs, folders)), folder, progress)

    scaling = {}
    for label, spec in specs.items():
        loaded = next((c for m, (c, _) in compressors.items() if variant(m)[0] == label), None)
        if loaded is not None:
            scaling[label] = scorer_vs_full_model(model, tokenizer, loaded, items[0])
            progress(f"one prompt of {scaling[label]['tokens']} tokens: {label} scorer (layers 0..{spec.layer}) "
                     f"{scaling[label]['scorer_s']:.2f} s, full {spec.model.num_hidden_layers}-layer forward "
                     f"{scaling[label]['full_forward_s']:.2f} s")
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        if args.rows_file:
            with open(args.rows_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    started = time.perf_counter()
    for number, item in enumerate(items, 1):
        progress(f"item {number}/{len(items)} {item['id']} ({item['n_tokens']} tokens, depth {item['depth']})")
        ok, text = answer_correct(model, tokenizer, item, item["context"])
        language = item["language"]
        record({"id": item["id"], "kind": item["kind"], "language": language, "method": "none", "rate": 1.0,
                "correct": ok, "tokens_in": item["n_tokens"], "tokens_out": item["n_tokens"], "seconds": 0.0,
                "output": text})
        for method, (compressor, options) in compressors.items():
            for rate in rates:
                result = compressor.compress(item["context"], rate=rate, question=item["question"], **options)
                ok, text = answer_correct(model, tokenizer, item, result.context)
                record({"id": item["id"], "kind": item["kind"], "language": language, "method": method, "rate": rate,
                        "correct": ok, "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                        "seconds": result.seconds, "answer_kept": item["answer"] in result.context,
                        "output": text})
    summary = {"languages": summarize_languages(rows, methods, rates)}
    summary.update({"items": len(items), "per_kind": args.per_kind, "language": args.language,
                    "tokens": [args.min_tokens, args.max_tokens],
                    "rates": rates, "methods": methods, "seed": args.seed, "seconds": round(time.perf_counter() - started, 1),
                    "specs": {label: {"layer": spec.layer, "heads": spec.heads, "n_o": spec.n_o, "kernel": spec.kernel,
                                      "max_layer": spec.max_layer} for label, spec in specs.items()},
                    "torch_threads": torch.get_num_threads(), "scorer_vs_full_forward": scaling})
    for label, one in scaling.items():
        print(f"{label} scorer {one['scorer_s']:.2f} s vs full forward {one['full_forward_s']:.2f} s "
              f"on {one['tokens']} tokens (ratio {one['ratio']:.2f})")
    print(render_languages(summary["languages"], methods, rates))
    print(f"\n{len(items)} items in {summary['seconds']:.0f} s")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
