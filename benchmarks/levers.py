"""The server's levers on the bundled model, side by side in one run, judged as the server judges (vLLM).

    .venv/bin/python benchmarks/levers.py [--work /tmp/bench-levers] [--limit 60] [--long-items 3]
    .venv/bin/python benchmarks/levers.py --render /tmp/bench-levers/levers.json     # the table again

Builds (apply --no-eval, reused from WORK when there) the top public LG Aimers approach (recipes/lg-aimers-top.yaml),
each lever alone on top of it, and the tool's own recipe (recipes/lg-aimers.yaml):

    kv-fp8     + kv_cache: fp8 (calibrated on Korean + chat-template windows)
    kv-int8    + kv_cache: int8 (vLLM refuses it: the row records the engine's refusal)
    context    + a context stage at the smallest length that holds the suite's longest prompt (+ 32 answer tokens)
    static     w8a8-int8-static (one calibrated scale per activation tensor) instead of dynamic per-token
    mse        observer: mse instead of min-max

then measures the source (first and last, for the run-to-run spread) and every output with the `lg-aimers`
suite in vLLM (the target's settings: chat template, `workload` timing, max_model_len from the config) and
reports Perf, tok/s, SpeedNorm, Score against the source, the KV-cache dtype the engine chose and the tokens it
allocated. `--limit` / `--long-items` cap the items as in benchmarks/judge.py.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from judge import measure, scores, spec_for, suite_with_long_items  # noqa: E402

KV_CALIBRATION = "{corpus: mixed, chat_template: true, samples: 64, seq_len: 512}"
VARIANTS = {
    "top": ("lg-aimers-top", []),
    "kv-fp8": ("lg-aimers-top", ["stages[0].kv_cache=fp8", f"stages[0].calibration={KV_CALIBRATION}"]),
    "kv-int8": ("lg-aimers-top", ["stages[0].kv_cache=int8", f"stages[0].calibration={KV_CALIBRATION}"]),
    "context": ("lg-aimers-top", []),  # the context stage is added in build(), at the length measured there
    "static": ("lg-aimers-top", ["stages[0].scheme=w8a8-int8-static", f"stages[0].calibration={KV_CALIBRATION}"]),
    "mse": ("lg-aimers-top", ["stages[0].observer=mse"]),
    "lg-aimers": ("lg-aimers", []),
}
ANSWER_TOKENS = 32


def smallest_context(source: Path, suite: Path | None) -> int:
    """The suite's longest generative prompt (chat template, as lm-eval renders it) plus ANSWER_TOKENS (every
    item of the suite, not only those a capped run measures: the recipe's eval suite is checked whole)."""
    from transformers import AutoTokenizer

    from compressor.evaluate.prompt_lengths import generative_prompt_lengths
    from compressor.evaluate.suite import load_suite

    found = generative_prompt_lengths(load_suite(suite or "lg-aimers"), AutoTokenizer.from_pretrained(source))
    return max(t.longest_prompt for t in found) + ANSWER_TOKENS


def build(name: str, out: Path, context: int) -> Path:
    from compressor.edits.context import ContextParams
    from compressor.pipeline import apply_recipe
    from compressor.recipe import load_recipe

    if not (out / "model" / "config.json").is_file():
        recipe_name, overrides = VARIANTS[name]
        recipe = load_recipe(recipe_name, overrides)
        if name == "context":
            recipe.stages.insert(0, ContextParams(stage="context", max_position_embeddings=context,
                                                  min_answer_tokens=ANSWER_TOKENS))
        print(f"applying {name} -> {out}", file=sys.stderr)
        started = time.perf_counter()
        apply_recipe(recipe, f"{recipe_name} {' '.join(overrides)}".strip(), out_dir=out, force=True, evaluate=False)
        print(f"  {name}: applied in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-levers"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--limit", type=int, default=60, help="cap every task")
    parser.add_argument("--long-items", type=int, default=3, help="cap ko_longrag alone")
    parser.add_argument("--render", type=Path, default=None, help="print the table of a saved levers.json, run nothing")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return

    from compressor.core.errors import UserError
    from compressor.models.builtin import materialize_builtin

    args.work.mkdir(parents=True, exist_ok=True)
    source = materialize_builtin("smollm2-135m")
    suite = suite_with_long_items(args.work, args.long_items) if args.long_items else None
    context = smallest_context(source, None)  # the whole suite's longest prompt, as the recipe's eval suite checks
    variants = args.variants.split(",")
    folders = {name: build(name, args.work / name, context) for name in variants}
    spec = spec_for("vllm", args.limit, suite)
    results = {"variants": variants, "limit": args.limit, "long_items": args.long_items, "context": context,
               "settings": spec.model_dump(mode="json"), "runs": {}}
    path = args.work / "levers.json"
    for name, folder in [("source", source), *folders.items(), ("source_again", source)]:
        try:
            results["runs"][name] = measure(folder, spec, f"vllm {name}")
        except UserError as error:  # the engine refused the folder: that is the lever's result
            results["runs"][name] = {"refused": str(error)}
        path.write_text(json.dumps(results, indent=1, default=str))
    print(render(results))


def render(results: dict) -> str:
    runs = results["runs"]
    base, again = runs["source"], runs.get("source_again")
    lines = [f"(task cap {results['limit']}; ko_longrag {results['long_items']}; context lever: "
             f"{results['context']} tokens)", "",
             "| model | ko_mc | ko_longrag | ko_particles | ko_bpb | Perf | tok/s | ms/tok | SpeedNorm | Score "
             "| KV cache (engine) | KV tokens | max_model_len |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    table = {}
    for name in ["source", *results["variants"], "source_again"]:
        m = runs.get(name)
        if m is None:
            continue
        if "refused" in m:
            lines.append(f"| {name} | refused by vLLM: {m['refused'][-160:]} |" + " |" * 11)
            continue
        s = scores(m, base)["workload"]
        table[name] = s
        value = lambda task: next((v for k, v in m["tasks"][task].items()  # noqa: E731
                                   if k.split(",")[0] in ("acc", "exact_match", "bits_per_byte")), float("nan"))
        engine = m.get("engine") or {}
        lines.append(f"| {name} | {value('ko_mc'):.3f} | {value('ko_longrag'):.3f} | {value('ko_particles'):.3f} "
                     f"| {value('ko_bpb'):.3f} | {m['perf']:.3f} | {m['workload']['output_tokens_per_s']:.1f} "
                     f"| {m['tpt_ms']:.2f} | {s['speed_norm']:.3f} | {s['score']:.3f} | {engine.get('cache_dtype')} "
                     f"| {engine.get('kv_cache_tokens')} | {engine.get('max_model_len')} |")
    if again and "refused" not in again:
        spread = abs(again["tpt_ms"] - base["tpt_ms"]) / base["tpt_ms"]
        lines += ["", f"Source measured first and last: workload ms/token differs by {spread:.1%}."]
    if "top" in table and "lg-aimers" in table:
        gain = table["lg-aimers"]["score"] - table["top"]["score"]
        lines.append(f"lg-aimers.yaml vs lg-aimers-top.yaml: Score {gain:+.3f} (goal: >= +0.05).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
