"""Reports: report.json for machines, report.md and a terminal table for people."""

import json
from pathlib import Path

COLUMNS = ("model", "params (M)", "size MB", "word ppl", "bits/byte", "ms/token", "PerfNorm", "SpeedNorm", "Score")


def _fmt(value, digits=3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_rows(report: dict) -> list[tuple[str, ...]]:
    ev = report.get("eval")
    if not ev:
        return []
    rows = []
    for label, key in ((report["recipe"], "model"), ("source (baseline)", "baseline")):
        m = ev.get(key)
        if not m:
            continue
        is_model = key == "model"
        rows.append((
            label,
            _fmt(m["params"] / 1e6, 1),
            _fmt(report["model"]["size_mb"] if is_model else report["source"].get("size_mb"), 1),
            _fmt(m["perplexity"]["word_perplexity"], 2),
            _fmt(m["perplexity"]["bits_per_byte"], 4),
            _fmt(m["tpt_ms"], 2),
            _fmt(ev.get("perf_norm") if is_model else 1.0),
            _fmt(ev.get("speed_norm") if is_model else 0.0),
            _fmt(ev.get("score") if is_model else 0.5),
        ))
    return rows


def markdown(report: dict) -> str:
    lines = [f"# {report['recipe']}", "", f"Source: `{report['source']['id']}` (sha256 {report['source']['sha256'][:12]}…)", ""]
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
        lat = ev["model"]["latency"]
        dtypes = ", ".join(f"{k} {ev[k]['latency']['dtype']} (perplexity in {ev[k]['perplexity']['compute_dtype']})"
                           for k in ("model", "baseline") if ev.get(k))
        lines += ["", f"Runtime {ev['runtime']} on {ev['device']} (dtype: {dtypes}); Perf = {ev['perf_definition']}; "
                  f"time per output token: median of {lat['runs']} runs, {lat['prompt_tokens']}-token prompt, "
                  f"{lat['new_tokens']} new tokens, batch {lat['batch_size']}.",
                  "Score = max(0.5·PerfNorm + 0.5·SpeedNorm, 0), PerfNorm = perf/perf_base, SpeedNorm = 1 − tpt/tpt_base."]
    return "\n".join(lines) + "\n"


def write_reports(report: dict, folder: Path) -> None:
    folder = Path(folder)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(markdown(report))


def rich_table(report: dict):
    from rich.table import Table

    table = Table(title=f"{report['recipe']} vs source")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in summary_rows(report):
        table.add_row(*row)
    return table
