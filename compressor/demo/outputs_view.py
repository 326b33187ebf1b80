"""What the outputs page shows, without Streamlit: the report rows of output folders and sweeps, their order,
the Perf-vs-time chart with the source and Score iso-lines, and one output's report page."""

import json
import math
import os
import re
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.layout import (HEATMAP_FILE, IMPORTANCE_PNG, RECIPE_FILE, REPORT_JSON, REPORT_MD, REPORT_PNG,
                                    is_output)
from compressor.demo.folders import is_sweep
from compressor.export.check_record import read_checks
from compressor.reports.report import comparison_rows, evaluations, short_names
from compressor.reports.sweep import SWEEP_JSON, pareto_front, read_sweep_document, sweep_rows

SORT_KEYS = {"Score": ("score", True), "Perf": ("perf", True), "ms/token": ("tpt_ms", False)}  # column, descending
ISO_SCORES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TABLE_COLUMNS = {"output": "output", "recipe": "recipe", "eval": "eval", "size_mb": "size MB", "perf": "Perf",
                 "tpt_ms": "ms/token", "perf_norm": "PerfNorm", "speed_norm": "SpeedNorm", "score": "Score",
                 "check": "check", "status": "status"}
NOT_A_FOLDER_WE_SHOW = "not an output of `compressor apply` (no model/config.json) nor a sweep (no sweep.json)"


def extra_folders(text: str) -> list[Path]:
    """Folders typed into the page: separated by os.pathsep or whitespace."""
    return [Path(part) for part in re.split(rf"[{re.escape(os.pathsep)}\s]+", text or "") if part]


# the table


def output_table(folders) -> tuple[list[dict], list[str]]:
    """One row per evaluation of each output and of each sweep's trials, each with its `check` status; and one
    line per folder that cannot be shown."""
    outputs, sweep_folders, problems = [], [], []
    for folder in dict.fromkeys(map(Path, folders)):
        if is_sweep(folder):
            sweep_folders.append(folder)
        elif is_output(folder):
            outputs.append(folder)
        elif not folder.exists():
            problems.append(f"{folder}: no such folder")
        else:
            problems.append(f"{folder}: {NOT_A_FOLDER_WE_SHOW}")
    rows = _report_rows(outputs, problems)
    for folder in sweep_folders:
        rows += _trial_rows(folder, problems)
    statuses = {output: check_status(read_checks(output)) for output in {row["output"] for row in rows}}
    for row in rows:
        row["check"] = statuses[row["output"]]
    return rows, problems


def _report_rows(outputs: list[Path], problems: list[str]) -> list[dict]:
    """The outputs' report rows, best Score first; a folder whose report.json is missing or malformed is a
    problem line naming it (one folder at a time, so one bad report costs only its own rows)."""
    rows = []
    for folder in outputs:
        try:
            rows += comparison_rows([folder])
        except UserError as error:
            problems.append(str(error))
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # evaluations missing their numbers
            problems.append(f"{folder / REPORT_JSON}: not a report written by `compressor apply` "
                            f"({type(error).__name__}: {error})")
    return sort_rows(rows, "Score")


def _trial_rows(folder: Path, problems: list[str]) -> list[dict]:
    """A sweep's trials: the report rows of those whose folder holds a report.json, the sweep's own numbers
    (and the trial's status or error) for the others."""
    try:
        trials = sweep_rows(read_sweep_document(folder))
    except (UserError, KeyError, TypeError, AttributeError) as error:
        problems.append(str(error) if isinstance(error, UserError) else
                        f"{folder / SWEEP_JSON}: not a sweep document written by `compressor sweep` "
                        f"({type(error).__name__}: {error})")
        return []
    rows = []
    for trial in trials:
        trial_folder = folder / (trial["folder"] or f"trials/{trial['id']}")
        reported = _report_rows([trial_folder], problems) if (trial_folder / REPORT_JSON).is_file() else []
        status = trial["status"] + (f": {trial['error']}" if trial.get("error") else "")
        rows += reported or [{"output": str(trial_folder), "recipe": None, "eval": None, "status": status,
                              **{k: trial.get(k) for k in ("size_mb", "perf", "tpt_ms", "perf_norm", "speed_norm",
                                                            "score")}}]
    return [{**row, "sweep": str(folder)} for row in rows]


def check_status(checks: dict) -> str:
    """'vllm: pass · transformers: FAIL', or 'not checked'."""
    return " · ".join(f"{runtime}: {'pass' if entry.get('passed') else 'FAIL'}"
                      for runtime, entry in checks.items()) or "not checked"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def sort_rows(rows: list[dict], by: str) -> list[dict]:
    """By Score or Perf (highest first) or ms/token (lowest first); rows without that number last, in their
    order."""
    if by not in SORT_KEYS:
        raise UserError(f"sort by {by!r}: expected one of {', '.join(SORT_KEYS)}")
    column, descending = SORT_KEYS[by]
    numbered = [r for r in rows if _number(r.get(column)) is not None]
    rest = [r for r in rows if _number(r.get(column)) is None]
    return sorted(numbered, key=lambda r: r[column], reverse=descending) + rest


def table_records(rows: list[dict]) -> list[dict]:
    """The rows as the page's table shows them: its column names, in its order (a sweep column when any), each
    output by its folder name (its whole path where two share a name)."""
    columns = dict(TABLE_COLUMNS)
    if any(r.get("sweep") for r in rows):
        columns["sweep"] = "sweep"
    names = short_names([r["output"] for r in rows])
    return [{title: names[row["output"]] if key == "output" else row.get(key) for key, title in columns.items()}
            for row in rows]


def eval_labels(rows: list[dict]) -> list[str]:
    """The evaluation labels (torch, vllm, torch+snapkv@0.5...) that have scored rows, most rows first."""
    labels = [r["eval"] for r in rows if _plotted(r)]
    return sorted(dict.fromkeys(labels), key=lambda label: -labels.count(label))


# the chart


def iso_perf(score: float, tpt_ms: float, baseline: tuple[float, float]) -> float:
    """The Perf at which an output of TPT_MS gets SCORE: Score = 0.5·perf/perf_base + 0.5·(1 − tpt/tpt_base),
    so perf = perf_base·(2·Score − 1 + tpt/tpt_base)."""
    perf_base, tpt_base = baseline
    return perf_base * (2 * score - 1 + tpt_ms / tpt_base)


def iso_lines(baseline: tuple[float, float], x_domain, y_domain, scores=ISO_SCORES) -> list[dict]:
    """Each Score line's two ends, clipped to the plotted box ({score, end, tpt_ms, perf}); lines that miss the
    box are left out."""
    perf_base, tpt_base = baseline
    lines = []
    for score in scores:
        # perf is linear in tpt: solve for where the line enters and leaves the box's Perf range
        low = max(x_domain[0], tpt_base * (y_domain[0] / perf_base - 2 * score + 1))
        high = min(x_domain[1], tpt_base * (y_domain[1] / perf_base - 2 * score + 1))
        if low < high:
            lines += [{"score": f"Score {score:g}", "end": end, "tpt_ms": t, "perf": iso_perf(score, t, baseline)}
                      for end, t in (("start", low), ("end", high))]
    return lines


def _plotted(row: dict) -> bool:
    return (row.get("status") == "scored" and _number(row.get("perf")) is not None
            and _number(row.get("tpt_ms")) is not None)


def report_baseline(output: str, label: str) -> tuple[float, float] | None:
    """(perf, tpt_ms) of the source as OUTPUT's evaluation LABEL measured it; None when it cannot be read."""
    try:
        report = json.loads((Path(output) / REPORT_JSON).read_text(encoding="utf-8"))
        baseline = evaluations(report)[label]["baseline"]
        perf, tpt = _number(baseline["perf"]), _number(baseline["tpt_ms"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (perf, tpt) if perf and tpt else None


def _box(values: list[float], margin: float) -> tuple[float, float]:
    """The plotted range of VALUES with MARGIN (a share of their span) each side, not below 0 for positive ones."""
    low, high = min(values), max(values)
    span = (high - low) or abs(high) or 1.0
    return (max(low - span * margin, 0.0) if low >= 0 else low - span * margin), high + span * margin


def frontier_chart(rows: list[dict], eval_label: str):
    """(altair chart, note): Perf against ms/token of the scored rows of EVAL_LABEL, the Pareto front joined,
    the source as a reference and the Score iso-lines through its plane; the note says what the chart could
    not honour (no baseline, several baselines), else None. (None, note) when no row of that label is scored."""
    import altair as alt

    rows = [r for r in rows if r.get("eval") == eval_label and _plotted(r)]
    if not rows:
        return None, f"no scored output for the evaluation {eval_label}"
    names = short_names([r["output"] for r in rows])
    front = set(pareto_front([(str(i), r["tpt_ms"], r["perf"]) for i, r in enumerate(rows)]))
    points = [{"output": names[r["output"]], "path": r["output"], "recipe": r.get("recipe"), "Score": r["score"],
               "perf": r["perf"], "tpt_ms": r["tpt_ms"], "front": "Pareto front" if str(i) in front else "dominated"}
              for i, r in enumerate(rows)]
    baseline, note = chart_baseline(rows, eval_label, names)
    xs = [p["tpt_ms"] for p in points] + ([baseline[1]] if baseline else [])
    ys = [p["perf"] for p in points] + ([baseline[0]] if baseline else [])
    x_domain, y_domain = _box(xs, 0.15), _box(ys, 0.25)
    x = alt.X("tpt_ms:Q", title="ms per output token (lower is better)", scale=alt.Scale(domain=x_domain, zero=False))
    y = alt.Y("perf:Q", title="Perf (higher is better)", scale=alt.Scale(domain=y_domain, zero=False))
    tooltip = ["output:N", "recipe:N", alt.Tooltip("Score:Q", format=".3f"), alt.Tooltip("perf:Q", format=".3f"),
               alt.Tooltip("tpt_ms:Q", format=".2f"), "path:N"]
    dots = alt.Chart(alt.Data(values=points)).mark_point(filled=True, size=90).encode(
        x=x, y=y, tooltip=tooltip, shape=alt.Shape("front:N", title=None),
        color=alt.Color("front:N", title=None, scale=alt.Scale(domain=["Pareto front", "dominated"],
                                                               range=["#cc3333", "#3b7dd8"])))
    labels = alt.Chart(alt.Data(values=points)).mark_text(align="left", dx=7, dy=-7, fontSize=11).encode(
        x=x, y=y, text="output:N")
    front_points = sorted((p for p in points if p["front"] == "Pareto front"), key=lambda p: p["tpt_ms"])
    front_line = alt.Chart(alt.Data(values=front_points)).mark_line(
        interpolate="step-after", color="#cc3333", strokeWidth=1.2, clip=True).encode(x=x, y=y, order="tpt_ms:Q")
    layers = [front_line, dots, labels]
    if baseline:
        layers = _reference_layers(baseline, x, y, x_domain, y_domain) + layers
    return alt.layer(*layers).properties(title=f"Perf against time per token: {eval_label}", height=420), note


def chart_baseline(rows: list[dict], eval_label: str, names: dict) -> tuple[tuple[float, float] | None, str | None]:
    """The source's (perf, tpt_ms) the iso-lines are drawn for: the first row's; a note when it has none or
    when the rows were measured against different baselines."""
    baselines = {r["output"]: report_baseline(r["output"], eval_label) for r in rows}
    first = rows[0]["output"]
    if baselines[first] is None:
        return None, f"{names[first]}: no baseline in its {eval_label} evaluation, so no source point nor Score lines"
    different = {b for b in baselines.values() if b is not None and b != baselines[first]}
    if different:
        perf, tpt = baselines[first]
        return baselines[first], (f"the outputs of {eval_label} were measured against {len(different) + 1} different "
                                  f"baselines; the source and Score lines are {names[first]}'s (Perf {perf:.3f}, "
                                  f"{tpt:.2f} ms/token)")
    return baselines[first], None


def _reference_layers(baseline, x, y, x_domain, y_domain) -> list:
    import altair as alt

    perf, tpt = baseline
    lines = iso_lines(baseline, x_domain, y_domain)
    iso = alt.Chart(alt.Data(values=lines)).mark_line(strokeDash=[3, 3], color="#999999", strokeWidth=0.8,
                                                      clip=True).encode(x=x, y=y, detail="score:N")
    iso_text = alt.Chart(alt.Data(values=[p for p in lines if p["end"] == "end"])).mark_text(
        align="right", baseline="top", dx=-3, dy=3, fontSize=10, color="#666666").encode(x=x, y=y, text="score:N")
    source = [{"output": "source (baseline)", "perf": perf, "tpt_ms": tpt}]
    diamond = alt.Chart(alt.Data(values=source)).mark_point(shape="diamond", size=160, filled=True, color="#777777")
    source_point = diamond.encode(x=x, y=y, tooltip=["output:N", alt.Tooltip("perf:Q", format=".3f"),
                                                     alt.Tooltip("tpt_ms:Q", format=".2f")])
    source_text = alt.Chart(alt.Data(values=source)).mark_text(align="left", dx=8, dy=8, color="#555555").encode(
        x=x, y=y, text="output:N")
    return [iso, iso_text, source_point, source_text]


# one output's report page


def report_folders(rows: list[dict]) -> list[str]:
    """The folders of the rows that have a report page to show (outputs, and trials that wrote a report), in
    order."""
    return [f for f in dict.fromkeys(r["output"] for r in rows) if is_output(f) or (Path(f) / REPORT_JSON).is_file()]


def _read_text(path: Path, what: str, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{path}: no {path.name} ({what})")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path}: cannot be read ({type(error).__name__}: {error})")
    return None


def report_stages(folder: Path, problems: list[str]) -> list[dict]:
    """report.json's stages: what each did, in how long (its per-item scores left out, as in report.md)."""
    path = Path(folder) / REPORT_JSON
    text = _read_text(path, "expected one written by `compressor apply`", problems)
    if text is None:
        return []
    try:
        return [{"stage": s["stage"], "seconds": s.get("seconds"),
                 "result": json.dumps({k: v for k, v in (s.get("result") or {}).items() if k != "scores"})}
                for s in json.loads(text).get("stages") or []]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        problems.append(f"{path}: not a report written by `compressor apply` ({type(error).__name__}: {error})")
        return []


def report_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    found = [folder / REPORT_PNG, *sorted(folder.glob("long_context-*.png")), folder / HEATMAP_FILE,
             folder / IMPORTANCE_PNG]
    return [path for path in found if path.is_file()]


def check_table(checks: dict) -> list[dict]:
    return [{"runtime": runtime, "verdict": "pass" if entry.get("passed") else "FAIL",
             "prefix agreement": entry.get("prefix_agreement"), "min agreement": entry.get("min_agreement"),
             "checked at": entry.get("checked_at"), "reasons": "; ".join(map(str, entry.get("reasons") or [])),
             "artifact": entry.get("artifact")} for runtime, entry in checks.items()]


def report_page(folder) -> dict:
    """What the page shows for one output: report.md, its plots, recipe.yaml, report.json's stages and the
    `check` verdicts; one line per file that is missing or cannot be read (never an exception)."""
    folder = Path(folder)
    problems = []
    return {"folder": str(folder),
            "markdown": _read_text(folder / REPORT_MD, "expected one written by `compressor apply`", problems),
            "images": report_images(folder),
            "recipe": _read_text(folder / RECIPE_FILE, "expected the recipe `compressor apply` keeps there", problems),
            "stages": report_stages(folder, problems),
            "checks": check_table(read_checks(folder)),
            "problems": problems}
