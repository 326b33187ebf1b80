"""A sweep's results for people: the trials ranked by the objective (sweep.md, a terminal table) and the
Pareto front of time per token against Perf (pareto.png). The document is what sweep.json holds."""

import json
import math
from pathlib import Path

from compressor.core.atomic import atomic_file
from compressor.core.errors import UserError

SWEEP_JSON, SWEEP_MD, PARETO_PNG = "sweep.json", "sweep.md", "pareto.png"
COLUMNS = ("trial", "params", "status", "Perf", "ms/token", "PerfNorm", "SpeedNorm", "Score", "size MB", "feasible")


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def read_sweep_document(folder: Path) -> dict:
    """FOLDER/sweep.json as written by `compressor sweep`; a one-line UserError for anything else."""
    path = Path(folder) / SWEEP_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("trials"), list):
            raise ValueError("no trials list")
        return document
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: not a sweep document written by `compressor sweep` ({error})") from None


def pareto_front(points) -> list[str]:
    """The ids of the (id, tpt_ms, perf) points no other point beats: lower or equal time and higher or equal
    Perf, strictly better in one. Equal points all stay; points missing a number are left out. Fastest first."""
    kept = [(pid, _number(t), _number(p)) for pid, t, p in points]
    kept = [(pid, t, p) for pid, t, p in kept if t is not None and p is not None]

    def dominated(t, p):
        return any(ot <= t and op >= p and (ot < t or op > p) for _, ot, op in kept)

    return [pid for pid, t, p in sorted(kept, key=lambda point: (point[1], -point[2], point[0])) if not dominated(t, p)]


def ranked(trials: list[dict], objective: dict) -> list[dict]:
    """Finished trials with the objective's metric, feasible ones first, then by the objective; ties go to the
    lower time per token, then the id."""
    metric, sign = objective["metric"], (-1 if objective["direction"] == "maximize" else 1)
    done = [t for t in trials if t["status"] == "done" and _number(t["metrics"].get(metric)) is not None]
    return sorted(done, key=lambda t: (t.get("feasible") is False, sign * t["metrics"][metric],
                                       _number(t["metrics"].get("tpt_ms")) or math.inf, t["id"]))


def best_trial(trials: list[dict], objective: dict) -> dict | None:
    """The finished, feasible trial with the best objective; ties go to the lower time per token, then the id."""
    first = next(iter(ranked(trials, objective)), None)
    return first if first is not None and first.get("feasible") is not False else None


def _params(params: dict) -> str:
    return ", ".join(f"{path}={_value(value)}" for path, value in params.items()) or "(base)"


def _value(value) -> str:
    if isinstance(value, dict):
        label = value.get("stage") or value.get("method")
        rest = {k: v for k, v in value.items() if k not in ("stage", "method")}
        inner = " ".join(f"{k}:{v}" for k, v in rest.items())
        return f"{label}({inner})" if label else "{" + inner + "}"
    return str(value)


def _fmt(value, digits=3) -> str:
    value = _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def ordered_trials(document: dict) -> list[dict]:
    """Finished trials best first by the objective, then the rest in plan order."""
    done = ranked(document["trials"], document["objective"])
    return done + [t for t in document["trials"] if t not in done]


def sweep_rows(document: dict) -> list[dict]:
    """One row per trial, best first, for --json and the tables."""
    pareto = set(document.get("pareto") or [])
    return [{"id": t["id"], "params": t["params"], "status": t["status"], "best": t["id"] == document.get("best"),
             "pareto": t["id"] in pareto, "feasible": t.get("feasible"), "error": t.get("error"),
             "folder": t.get("folder"), **{k: t["metrics"].get(k) for k in
                                           ("perf", "tpt_ms", "perf_norm", "speed_norm", "score", "size_mb")}}
            for t in ordered_trials(document)]


def _cells(row: dict) -> tuple[str, ...]:
    marks = ("★ " if row["best"] else "") + ("◆ " if row["pareto"] else "")
    feasible = {True: "yes", False: "no", None: "–"}[row["feasible"]]
    return (marks + row["id"], _params(row["params"]), row["status"], _fmt(row["perf"]), _fmt(row["tpt_ms"], 2),
            _fmt(row["perf_norm"]), _fmt(row["speed_norm"]), _fmt(row["score"]), _fmt(row["size_mb"], 1), feasible)


def _counts(document: dict) -> str:
    statuses = [t["status"] for t in document["trials"]]
    resumed = sum(bool(t.get("resumed")) for t in document["trials"])
    parts = [f"{statuses.count(s)} {s}" for s in ("done", "failed", "interrupted", "pending") if s in statuses]
    return ", ".join(parts) + (f" ({resumed} resumed from an earlier run)" if resumed else "")


def sweep_markdown(document: dict) -> str:
    objective = document["objective"]
    lines = [f"# Sweep {document['name']}", "",
             f"Base `{document['base']}`, {document['search']} search, {document['executor']} executor: "
             f"{len(document['trials'])} trials ({_counts(document)}) in {document['seconds']:.0f} s.",
             f"Objective: {objective['direction']} {objective['metric']}"
             + (f"; constraints: {', '.join(document['constraints'])}." if document.get("constraints") else ".")]
    baseline = document.get("baseline")
    if baseline:
        lines.append(f"Source (baseline): Perf {_fmt(baseline['perf'])}, {_fmt(baseline['tpt_ms'], 2)} ms/token.")
    lines += ["", "★ best, ◆ on the Pareto front (time per token against Perf).", "",
              "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows = sweep_rows(document)
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in _cells(row)) + " |" for row in rows]
    failed = [row for row in rows if row["status"] != "done" and row["error"]]
    if failed:
        lines += ["", "## Trials that did not finish", ""]
        lines += [f"- `{row['id']}` ({_params(row['params'])}): {row['error']}" for row in failed]
    lines.append("")
    if document.get("best"):
        lines.append(f"The best trial's recipe: `best.yaml` (`compressor apply best.yaml`); its output: "
                     f"`trials/{document['best']}`.")
    else:
        lines.append("No trial finished and met the constraints: no best.yaml.")
    lines += ["", "![Pareto front](pareto.png)", ""]
    return "\n".join(lines)


def sweep_table(document: dict):
    from rich.table import Table

    table = Table(title=f"sweep {document['name']}: {document['objective']['direction']} "
                        f"{document['objective']['metric']} (★ best, ◆ Pareto)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("trial", "params", "status") else "right")
    for row in sweep_rows(document):
        table.add_row(*_cells(row))
    return table


def plot_pareto(document: dict, path: Path) -> Path:
    """Every finished trial as ms/token (x, lower is better) against Perf (y, higher is better); the front as a
    step line, the best trial named, the source as a star with the Score iso-lines through its plane."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in sweep_rows(document) if r["status"] == "done" and _number(r["tpt_ms"]) is not None
            and _number(r["perf"]) is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    if rows:
        ax.scatter([r["tpt_ms"] for r in rows], [r["perf"] for r in rows], s=28,
                   c=["#3b7dd8" if r["feasible"] is not False else "#bbbbbb" for r in rows],
                   label="trials (grey: infeasible)", zorder=3)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["tpt_ms"])
    if front:
        ax.step([r["tpt_ms"] for r in front], [r["perf"] for r in front], where="post", color="#cc3333",
                linewidth=1.2, label="Pareto front", zorder=2)
    best = next((r for r in rows if r["best"]), None)
    if best:
        ax.annotate(f"best {best['id'][:6]}", (best["tpt_ms"], best["perf"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    baseline = document.get("baseline")
    if baseline and baseline.get("tpt_ms") and baseline.get("perf"):
        tb, pb = baseline["tpt_ms"], baseline["perf"]
        ax.scatter([tb], [pb], marker="*", s=160, color="#999999", label="source", zorder=4)
        xs, perfs = [r["tpt_ms"] for r in rows] + [tb], [r["perf"] for r in rows] + [pb]
        low, high = min(xs) * 0.9, max(xs) * 1.05
        bottom, top = (min(perfs) * 0.8 if min(perfs) > 0 else 0), (max(perfs) * 1.15 or 1.0)
        grid = [low + (high - low) * i / 50 for i in range(51)]
        for target in (0.4, 0.5, 0.6, 0.7):  # Score = 0.5 P/Pb + 0.5 (1 - t/tb)  ->  P = Pb (2S - 1 + t/tb)
            line = [(t, pb * (2 * target - 1 + t / tb)) for t in grid]
            ax.plot(*zip(*line), linestyle=":", linewidth=0.8, color="#888888")
            inside = [(t, y) for t, y in line if bottom <= y <= top]
            if inside:  # labelled where the line leaves the plot
                ax.annotate(f"Score {target}", inside[-1], xytext=(-3, -3), textcoords="offset points", fontsize=7,
                            color="#666666", ha="right", va="top")
        ax.set_xlim(low, high)
        ax.set_ylim(bottom, top)
    if not rows:
        ax.text(0.5, 0.5, "no finished trial", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time per output token, ms (lower is better)")
    ax.set_ylabel("Perf (higher is better)")
    ax.set_title(f"sweep {document['name']}: {len(rows)} of {len(document['trials'])} trials finished", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def write_sweep_reports(document: dict, folder: Path) -> None:
    folder = Path(folder)
    with atomic_file(folder / SWEEP_MD, force=True) as staging:
        staging.write_text(sweep_markdown(document))
    with atomic_file(folder / PARETO_PNG, force=True) as staging:
        plot_pareto(document, staging)
