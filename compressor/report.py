"""Reports: report.json for machines, report.md and a terminal table for people."""

import json
from pathlib import Path

COLUMNS = ("model", "params (M)", "size MB", "Perf", "word ppl", "ms/token", "PerfNorm", "SpeedNorm", "Score")


def _fmt(value, digits=3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ppl(measurement: dict):
    ppl = measurement.get("tasks", {}).get("corpus_ppl", {})
    return next((v for k, v in ppl.items() if k.split(",")[0] == "word_perplexity"), None)


def row(label: str, report: dict, which: str = "model") -> tuple[str, ...]:
    ev = report["eval"]
    m = ev[which]
    is_model = which == "model"
    size = report["model"]["size_mb"] if is_model else report["source"].get("size_mb")
    return (label, _fmt(m["params"] / 1e6 if m.get("params") else None, 1), _fmt(size, 1), _fmt(m["perf"]),
            _fmt(_ppl(m), 2), _fmt(m["tpt_ms"], 2),
            _fmt(ev.get("perf_norm") if is_model else 1.0), _fmt(ev.get("speed_norm") if is_model else 0.0),
            _fmt(ev.get("score") if is_model else 0.5))


def summary_rows(report: dict) -> list[tuple[str, ...]]:
    ev = report.get("eval")
    if not ev:
        return []
    rows = [row(report["recipe"], report)]
    if ev.get("baseline"):
        rows.append(row("source (baseline)", report, "baseline"))
    return rows


def task_lines(ev: dict) -> list[str]:
    lines = ["| task | metric | model | baseline |", "|---|---|---|---|"]
    for task, metrics in ev["model"]["tasks"].items():
        for metric, value in metrics.items():
            base = ev.get("baseline", {}).get("tasks", {}).get(task, {}).get(metric)
            lines.append(f"| {task} | {metric} | {_fmt(value, 4)} | {_fmt(base, 4)} |")
    return lines


def markdown(report: dict) -> str:
    lines = [f"# {report['recipe']}", "", f"Source: `{report['source']['id']}` (sha256 {report['source'].get('sha256', '')[:12]}…)", ""]
    if report.get("stages"):
        lines += ["| stage | seconds | result |", "|---|---|---|"]
        for s in report["stages"]:
            result = {k: v for k, v in s["result"].items() if k != "scores"}
            lines.append(f"| {s['stage']} | {s['seconds']} | `{json.dumps(result)}` |")
        lines.append("")
    rows = summary_rows(report)
    if rows:
        ev = report["eval"]
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lat = ev["model"]["latency"][str(ev["settings"]["latency"]["batch_sizes"][0])]
        lines += ["", f"Runtime {ev['runtime']} ({ev['device']}), suite `{ev['suite']}`; Perf = {ev['perf_definition']}. "
                  f"Time per output token: median of {len(lat['tpt_ms_runs'])} runs "
                  f"(spread {lat['tpt_ms_min']:.2f}–{lat['tpt_ms_max']:.2f} ms), "
                  f"{ev['settings']['latency']['prompt_tokens']}-token prompt, "
                  f"{ev['settings']['latency']['new_tokens']} new tokens, batch {ev['settings']['latency']['batch_sizes'][0]}."
                  + (" Baseline reused from the cache." if ev.get("baseline_from_cache") else ""),
                  "Score = max(0.5·PerfNorm + 0.5·SpeedNorm, 0), PerfNorm = perf/perf_base, SpeedNorm = 1 − tpt/tpt_base.",
                  ""] + task_lines(ev)
    return "\n".join(lines) + "\n"


def write_reports(report: dict, folder: Path) -> None:
    folder = Path(folder)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(markdown(report))
    if report.get("eval", {}).get("baseline"):
        from compressor.plots import plot_model_vs_baseline

        plot_model_vs_baseline(report, folder / "report.png")


def rich_table(report: dict, title: str | None = None):
    from rich.table import Table

    table = Table(title=title or f"{report['recipe']} vs source")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in summary_rows(report):
        table.add_row(*r)
    return table


def comparison_rows(output_dirs) -> list[dict]:
    """One row per output folder with a report.json holding an evaluation, best Score first."""
    from compressor.errors import UserError

    rows = []
    for folder in output_dirs:
        path = Path(folder) / "report.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text())
        ev = report.get("eval") or {}
        if "score" not in ev:
            continue
        rows.append({"output": str(folder), "recipe": report["recipe"], "runtime": ev["runtime"],
                     "size_mb": report["model"]["size_mb"], "perf": ev["model"]["perf"], "tpt_ms": ev["model"]["tpt_ms"],
                     "word_ppl": _ppl(ev["model"]), "perf_norm": ev["perf_norm"], "speed_norm": ev["speed_norm"],
                     "score": ev["score"]})
    if not rows:
        raise UserError("no report.json with an evaluation in: " + " ".join(str(f) for f in output_dirs))
    return sorted(rows, key=lambda r: r["score"], reverse=True)


def comparison_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="outputs by Score")
    columns = ("output", "runtime", "size_mb", "perf", "word_ppl", "tpt_ms", "perf_norm", "speed_norm", "score")
    for column in columns:
        table.add_column(column, justify="left" if column in ("output", "runtime") else "right")
    for r in rows:
        table.add_row(*(_fmt(r[c], 2 if c in ("size_mb", "word_ppl", "tpt_ms") else 3) for c in columns))
    return table
