"""Structural edits on SmolLM2, side by side: the seed's naive edits vs importance-ranked vs ranked + heal.

    .venv/bin/python benchmarks/structural.py            # the full comparison (hours on 2 CPU cores)
    .venv/bin/python benchmarks/structural.py --quick    # smoke scale: quick suite, few variants, short heal
    .venv/bin/python benchmarks/structural.py --only drop2-top,drop2-angular

Each variant is a recipe applied by compressor's own pipeline (no cast: fp32 like the source, so only
the structure differs) and judged by compressor.evaluate.judge (torch runtime) against the source,
which is measured once, fresh, by the first variant of the run and reused from the cache by the rest.
Variants in one group remove about the same number of parameters. Writes OUT/results.json and
OUT/table.md and prints the table: params, Perf, PerfNorm, SpeedNorm, Score, word perplexity, ms/token.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def variants(calibration: dict, heal: dict) -> list[tuple[str, str, list[dict]]]:
    """(group, name, stages); the seed's naive edits first in each group."""
    cal = {"calibration": calibration}
    heal_stage = {"stage": "heal", **{k: v for k, v in heal.items() if k != "override"}}
    drop = lambda n, **how: {"stage": "drop_layers", "count": n, **how}  # noqa: E731
    heads = lambda by: {"stage": "prune_heads", "keep": 6, "gqa": "whole_groups", "by": by,  # noqa: E731
                        **(cal if by == "importance" else {})}
    mlp = {"stage": "prune_mlp", "intermediate_size": 1152, **cal}
    hidden = {"stage": "reduce_hidden", "hidden_size": 504, **cal}
    return [
        ("-2 layers (-7.1M)", "drop2-top", [drop(2, **{"from": "top"})]),
        ("-2 layers (-7.1M)", "drop2-angular", [drop(2, by="angular", **cal)]),
        ("-2 layers (-7.1M)", "drop2-angular+heal", [drop(2, by="angular", **cal), heal_stage]),
        ("heads 9->6 (-8.8M)", "heads6-index", [heads("index")]),
        ("heads 9->6 (-8.8M)", "heads6-importance", [heads("importance")]),
        ("heads 9->6 (-8.8M)", "heads6-importance+heal", [heads("importance"), heal_stage]),
        ("-4 layers (-14.2M)", "drop4-top", [drop(4, **{"from": "top"})]),
        ("-4 layers (-14.2M)", "drop4-angular", [drop(4, by="angular", **cal)]),
        ("-4 layers (-14.2M)", "drop4-block_influence", [drop(4, by="block_influence", **cal)]),
        ("-4 layers (-14.2M)", "drop4-block_influence+heal", [drop(4, by="block_influence", **cal), heal_stage]),
        ("width, about -4 layers", "mlp1152-importance", [mlp]),
        ("width, about -4 layers", "mlp1152-importance+heal", [mlp, heal_stage]),
        ("width, about -4 layers", "hidden504-importance", [hidden]),
        ("width, about -4 layers", "hidden504-importance+heal", [hidden, heal_stage]),
        ("-6 layers (-21.3M)", "drop6-top", [drop(6, **{"from": "top"})]),
        ("-6 layers (-21.3M)", "drop6-block_influence", [drop(6, by="block_influence", **cal)]),
        ("-6 layers (-21.3M)", "minitron", minitron_stages(heal)),  # recipes/minitron.yaml: drop 6 (BI) + heal
    ]


def minitron_stages(heal: dict) -> list[dict]:
    """recipes/minitron.yaml without its final cast (every variant stays fp32); its heal unless overridden."""
    import yaml

    stages = yaml.safe_load((ROOT / "recipes" / "minitron.yaml").read_text())["stages"]
    stages = [s for s in stages if s["stage"] != "cast"]
    for stage in stages:
        if stage["stage"] == "heal" and heal.get("override"):
            stage.update({k: v for k, v in heal.items() if k != "override"})
    return stages


QUICK = ("drop2-top", "drop2-angular", "drop2-angular+heal", "heads6-index", "heads6-importance",
         "heads6-importance+heal", "minitron")


def settings(quick: bool, heal_steps: int | None) -> tuple[dict, dict, dict]:
    if quick:
        calibration = {"samples": 8, "seq_len": 128}
        heal = {"steps": 10, "batch": 2, "seq_len": 128, "lr": 3e-4}
        judge = {"suite": "quick", "latency": {"prompt_tokens": 64, "new_tokens": 16, "runs": 2, "warmup": 1}}
    else:
        calibration = {"samples": 32, "seq_len": 256}
        heal = {"steps": 100, "batch": 4, "seq_len": 128, "lr": 3e-4}  # as in recipes/minitron.yaml
        judge = {"suite": "default", "latency": {"prompt_tokens": 256, "new_tokens": 128, "runs": 5, "warmup": 1}}
    if heal_steps is not None:
        heal["steps"] = heal_steps
    return calibration, heal, judge


def row(group: str, name: str, report: dict) -> dict:
    from compressor.reports.report import _ppl

    ev = report["eval"]
    heal = next((s["result"] for s in report["stages"] if s["stage"] == "heal"), None)
    return {"group": group, "variant": name, "params_m": round(ev["model"]["params"] / 1e6, 2),
            "perf": round(ev["model"]["perf"], 4), "perf_norm": round(ev["perf_norm"], 4),
            "speed_norm": round(ev["speed_norm"], 4), "score": round(ev["score"], 4),
            "word_ppl": _ppl(ev["model"]), "tpt_ms": round(ev["model"]["tpt_ms"], 2),
            "tasks": ev["model"]["tasks"], "apply_s": round(sum(s["seconds"] for s in report["stages"]), 1),
            "heal": None if heal is None else {k: heal[k] for k in ("steps", "heldout_kd_before", "heldout_kd_after",
                                                                    "seconds")}}


def markdown(rows: list[dict], baseline: dict) -> str:
    lines = ["| group | variant | params (M) | Perf | PerfNorm | SpeedNorm | Score | word ppl | ms/token | heal KD (held back) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines.append(f"| source | SmolLM2-135M | {baseline['params'] / 1e6:.2f} | {baseline['perf']:.4f} | 1 | 0 | 0.5 | "
                 f"{baseline['word_ppl']:.2f} | {baseline['tpt_ms']:.2f} | |")
    for r in rows:
        heal = f"{r['heal']['heldout_kd_before']:.3f} -> {r['heal']['heldout_kd_after']:.3f}" if r["heal"] else ""
        ppl = f"{r['word_ppl']:.2f}" if r["word_ppl"] is not None else "-"
        lines.append(f"| {r['group']} | {r['variant']} | {r['params_m']:.2f} | {r['perf']:.4f} | {r['perf_norm']:.4f} | "
                     f"{r['speed_norm']:.4f} | {r['score']:.4f} | {ppl} | {r['tpt_ms']:.2f} | {heal} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick suite, 6 variants, 10 heal steps (smoke run)")
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--heal-steps", type=int, help="override the heal steps")
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-structural")
    args = parser.parse_args()

    from compressor.pipeline import apply_recipe
    from compressor.recipe import parse_recipe

    calibration, heal, judge = settings(args.quick, args.heal_steps)
    heal["override"] = args.quick or args.heal_steps is not None  # else minitron.yaml keeps its own heal
    chosen = args.only.split(",") if args.only else (QUICK if args.quick else None)
    todo = [v for v in variants(calibration, heal) if chosen is None or v[1] in chosen]
    unknown = set(chosen or ()) - {v[1] for v in todo}
    if unknown:
        sys.exit(f"unknown variants: {', '.join(sorted(unknown))}")
    rows, baseline, started = [], None, time.perf_counter()
    for index, (group, name, stages) in enumerate(todo):
        print(f"[{index + 1}/{len(todo)}] {name}: {json.dumps(stages)}", flush=True)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
        recipe = parse_recipe({"name": slug, "model": args.model, "stages": stages, "eval": judge}, "structural.py")
        report = apply_recipe(recipe, "benchmarks/structural.py", out_dir=args.out / slug, force=True,
                              fresh_baseline=index == 0, progress=lambda m: print(f"    {m}", flush=True))
        rows.append(row(group, name, report))
        if baseline is None:
            from compressor.reports.report import _ppl

            b = report["eval"]["baseline"]
            baseline = {"params": b["params"], "perf": b["perf"], "tpt_ms": b["tpt_ms"], "word_ppl": _ppl(b),
                        "tasks": b["tasks"]}
        r = rows[-1]
        print(f"    -> params {r['params_m']}M Perf {r['perf']:.4f} PerfNorm {r['perf_norm']:.4f} "
              f"SpeedNorm {r['speed_norm']:.4f} Score {r['score']:.4f}", flush=True)
    table = markdown(rows, baseline)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"model": args.model, "quick": args.quick, "judge": judge, "heal": {k: v for k, v in heal.items() if k != "override"}, "calibration": calibration,
         "baseline": baseline, "rows": rows, "seconds": round(time.perf_counter() - started)}, indent=1) + "\n")
    (args.out / "table.md").write_text(table)
    print(table)
    best = max(rows, key=lambda r: r["score"])
    print(f"best Score: {best['variant']} ({best['score']:.4f}); wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
