"""Reports: report.json for machines, report.md and a terminal table for people.

A report holds `eval` (the latest evaluation) and `evals` (every evaluation by label: the runtime, plus
the KV press when one was applied), so `compressor eval --runtime vllm` adds to what `apply` measured
in torch instead of replacing it.
"""

import json
from pathlib import Path

from compressor.core.atomic import atomic_file
from compressor.core.errors import UserError
from compressor.core.layout import REPORT_JSON, REPORT_MD, REPORT_PNG
from compressor.reports.evaluations import add_evaluation, eval_label, evaluations  # noqa: F401 (re-exported)
from compressor.reports.long_context import long_context_lines, write_long_context_plots
from compressor.reports.plots import plot_model_vs_baseline

COLUMNS = ("model", "params (M)", "size MB", "Perf", "word ppl", "ms/token", "PerfNorm", "SpeedNorm", "Score")


def _fmt(value, digits=3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ppl(measurement: dict):
    ppl = measurement.get("tasks", {}).get("corpus_ppl", {})
    return next((v for k, v in ppl.items() if k.split(",")[0] == "word_perplexity"), None)


def row(label: str, report: dict, ev: dict, which: str = "model") -> tuple[str, ...]:
    m = ev[which]
    is_model = which == "model"
    size = report["model"]["size_mb"] if is_model else report["source"].get("size_mb")
    return (label, _fmt(m["params"] / 1e6 if m.get("params") else None, 1), _fmt(size, 1), _fmt(m["perf"]),
            _fmt(_ppl(m), 2), _fmt(m["tpt_ms"], 2),
            _fmt(ev.get("perf_norm") if is_model else 1.0), _fmt(ev.get("speed_norm") if is_model else 0.0),
            _fmt(ev.get("score") if is_model else 0.5))


def summary_rows(report: dict, ev: dict | None = None) -> list[tuple[str, ...]]:
    ev = ev if ev is not None else report.get("eval")
    if not ev:
        return []
    rows = [row(report["recipe"], report, ev)]
    if ev.get("baseline"):
        rows.append(row("source (baseline)", report, ev, "baseline"))
    return rows


def task_lines(ev: dict) -> list[str]:
    lines = ["| task | metric | model | baseline |", "|---|---|---|---|"]
    for task, metrics in ev["model"]["tasks"].items():
        for metric, value in metrics.items():
            base = ev.get("baseline", {}).get("tasks", {}).get(task, {}).get(metric)
            lines.append(f"| {task} | {metric} | {_fmt(value, 4)} | {_fmt(base, 4)} |")
    return lines


def timing_line(ev: dict) -> str:
    """How the Score's time per token was measured."""
    settings = ev["settings"]["latency"]
    lat = ev["model"]["latency"][str(settings["batch_sizes"][0])]
    synthetic = (f"median of {len(lat['tpt_ms_runs'])} runs (spread {lat['tpt_ms_min']:.2f}–{lat['tpt_ms_max']:.2f} "
                 f"ms), {settings['prompt_tokens']}-token prompt, {settings['new_tokens']} new tokens, batch "
                 f"{settings['batch_sizes'][0]}")
    work = ev["model"].get("workload")
    if ev["model"].get("timing") == "workload" and work:
        return (f"Time per output token: the suite's generative requests batched ({work['requests']} requests, "
                f"{work['tokens']} generated tokens in {work['seconds']:.1f} s: {work['output_tokens_per_s']:.1f} "
                f"tok/s; batch {work['batch_size']}), the server's way; the synthetic figure beside it: "
                f"{ev['model']['synthetic_tpt_ms']:.2f} ms/token, {synthetic}.")
    return f"Time per output token: {synthetic}."


def status_lines(report: dict) -> list[str]:
    status = report.get("evaluation")
    if not status:
        return []
    what = {"pending": "Evaluation not finished", "incomplete": "Evaluation incomplete"}.get(status["status"],
                                                                                            status["status"])
    reason = f" ({status['error']})" if status.get("error") else ""
    return [f"**{what}**{reason}: the model is written; finish with `{status['finish_with']}`.", ""]


def eval_section(report: dict, ev: dict) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in summary_rows(report, ev)]
    lines += ["", f"Runtime {ev['runtime']} ({ev['device']}), suite `{ev['suite']}`; Perf = {ev['perf_definition']}. "
              + timing_line(ev) + (" Baseline reused from the cache." if ev.get("baseline_from_cache") else ""),
              "Score = max(0.5·PerfNorm + 0.5·SpeedNorm, 0), PerfNorm = perf/perf_base, SpeedNorm = 1 − tpt/tpt_base."]
    if ev.get("speed_caveat"):
        lines.append(f"Speed caveat: {ev['speed_caveat']}.")
    lines += [""] + task_lines(ev)
    if ev["model"].get("long_context_points"):
        lines += [""] + long_context_lines(ev)
    return lines


def markdown(report: dict) -> str:
    lines = [f"# {report['recipe']}", "", f"Source: `{report['source']['id']}` (sha256 {(report['source'].get('sha256') or '')[:12]}…)", ""]
    if report.get("stages"):
        lines += ["| stage | seconds | result |", "|---|---|---|"]
        for s in report["stages"]:
            result = {k: v for k, v in s["result"].items() if k != "scores"}
            lines.append(f"| {s['stage']} | {s['seconds']} | `{json.dumps(result)}` |")
        lines.append("")
    lines += status_lines(report)
    evals = evaluations(report)
    for label, ev in evals.items():
        if len(evals) > 1:
            lines += [f"## Evaluation: {label}", ""]
        lines += eval_section(report, ev) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_reports(report: dict, folder: Path) -> None:
    """report.json, report.md and (with a baseline) report.png in `folder`, each written atomically."""
    folder = Path(folder)
    with atomic_file(folder / REPORT_JSON, force=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_file(folder / REPORT_MD, force=True) as tmp:
        tmp.write_text(markdown(report))
    if report.get("eval", {}).get("baseline"):
        with atomic_file(folder / REPORT_PNG, force=True) as tmp:
            plot_model_vs_baseline(report, tmp)
    write_long_context_plots(report, folder)


def record_evaluation(output_dir: Path, ev_report: dict) -> dict:
    """Add the evaluation in `ev_report` (from `compressor eval`) to OUTPUT_DIR's report files.

    The apply's stages, model and source stay; the other evaluations stay under their labels.
    """
    output_dir = Path(output_dir)
    path = output_dir / REPORT_JSON
    existing = json.loads(path.read_text()) if path.is_file() else {
        key: ev_report[key] for key in ("recipe", "output", "model", "source")}
    report = add_evaluation(existing, ev_report["eval"])
    report.pop("evaluation", None)  # a pending or incomplete evaluation is finished now
    write_reports(report, output_dir)
    return report


def _table(title: str, columns, left=()):
    """A rich table whose cells wrap (fold) instead of being cut to `…` when the terminal is narrow."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right", overflow="fold")
    return table


def rich_table(report: dict, title: str | None = None):
    """The evaluated output beside its source; the caption says how speed was measured and what it is worth."""
    ev = report.get("eval") or {}
    table = _table(title or f"{report['recipe']} vs source", COLUMNS, left=("model",))
    for r in summary_rows(report):
        table.add_row(*r)
    caption = []
    if ev:
        work = ev["model"].get("workload")
        if ev.get("timing") == "workload" and work and work.get("output_tokens_per_s"):
            caption.append(f"timing: workload, the suite's batched generation ({work['output_tokens_per_s']:.1f} "
                           f"tok/s)")
        else:
            caption.append("timing: synthetic, one fixed prompt")
        if ev.get("speed_caveat"):
            caption.append(f"speed caveat: {ev['speed_caveat']}")
    if report.get("evaluation"):
        caption.append(status_lines(report)[0].replace("**", ""))
    table.caption = "; ".join(caption) or None
    table.caption_justify = "left"
    return table


NOT_EVALUATED = {"pending": "evaluation not finished", "incomplete": "evaluation incomplete"}


def comparison_rows(output_dirs) -> list[dict]:
    """One row per evaluation of each output folder, best Score first; outputs without a (complete) evaluation
    are listed after them with their status."""
    scored, unscored = [], []
    for folder in output_dirs:
        path = Path(folder) / REPORT_JSON
        if not path.is_file():
            unscored.append({"output": str(folder), "status": "no report.json (not an output of `apply`)"})
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            found = evaluations(report).items()
        except (ValueError, AttributeError, TypeError, KeyError):
            unscored.append({"output": str(folder), "status": "report.json unreadable"})
            continue
        rows = []
        for label, ev in found:
            if "score" not in ev:
                continue
            rows.append({"output": str(folder), "recipe": report["recipe"], "eval": label, "runtime": ev["runtime"],
                         "status": "scored", "timing": ev.get("timing", "synthetic"),
                         "size_mb": report["model"]["size_mb"], "perf": ev["model"]["perf"],
                         "tpt_ms": ev["model"]["tpt_ms"], "word_ppl": _ppl(ev["model"]),
                         "tok_s": (ev["model"].get("workload") or {}).get("output_tokens_per_s"),
                         "perf_norm": ev["perf_norm"], "speed_norm": ev["speed_norm"], "score": ev["score"],
                         "speed_caveat": ev.get("speed_caveat"),
                         "long_ppl": (ev["model"].get("long_context") or {}).get("ppl")})
        status = (report.get("evaluation") or {}).get("status")
        if status or not rows:
            unscored.append({"output": str(folder), "recipe": report.get("recipe"),
                             "size_mb": (report.get("model") or {}).get("size_mb"),
                             "status": NOT_EVALUATED.get(status, "evaluated without a baseline (no Score)"
                                                         if found else "not evaluated")
                             + (f" (finish: {report['evaluation']['finish_with']})" if status else "")})
        scored += rows
    if not scored and not any(r.get("recipe") for r in unscored):
        raise UserError("no report.json in: " + " ".join(str(f) for f in output_dirs))
    return sorted(scored, key=lambda r: r["score"], reverse=True) + unscored


def comparison_table(rows: list[dict]):
    columns = ("output", "eval", "size_mb", "perf", "word_ppl", "tpt_ms", "tok_s", "perf_norm", "speed_norm",
               "score")
    if any(r.get("long_ppl") is not None for r in rows):  # press rows: perplexity on the long document
        columns += ("long_ppl",)
    table = _table("outputs by Score (compare rows of one runtime only)", columns, left=("output", "eval"))
    names = short_names([r["output"] for r in rows])
    for r in rows:
        name = names[r["output"]]
        if r["status"] != "scored":
            table.add_row(name, r["status"], *[_fmt(r.get("size_mb"), 2) if c == "size_mb" else ""
                                                for c in columns[2:]])
            continue
        table.add_row(name, *(_fmt(r.get(c), 2 if c in ("size_mb", "word_ppl", "tpt_ms", "long_ppl", "tok_s") else 3)
                              for c in columns[1:]))
    # full paths below the table, whole (a path folded inside a cell would interleave with its neighbours)
    caption = [f"{name} = {path}" for path, name in names.items() if name != path]
    caveats = sorted({r["speed_caveat"] for r in rows if r.get("speed_caveat")})
    if caveats:
        caption.append("speed caveat: " + " | ".join(caveats))
    if caption:
        table.caption = "\n".join(caption)
        table.caption_justify = "left"
    return table


def short_names(paths: list[str]) -> dict[str, str]:
    """Each output by its folder name (or its whole path where two share a name)."""
    unique = list(dict.fromkeys(paths))
    names = {p: Path(p).name or p for p in unique}
    clashing = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {p: (p if n in clashing else n) for p, n in names.items()}
