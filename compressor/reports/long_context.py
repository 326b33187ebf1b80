"""The long-context part of a report: a markdown table per evaluation and PNG plots (ppl vs window, ...)."""

from __future__ import annotations

import re
from pathlib import Path

from compressor.core.atomic import atomic_file
from compressor.reports.evaluations import evaluations

VARIED = ("window", "n_sink", "ratio")


def _fmt(value, digits=2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def long_context_lines(ev: dict) -> list[str]:
    points = ev["model"]["long_context_points"]
    first = points[0]
    lines = [f"Long context: {first['tokens']} tokens of the corpus `long` split, prefilled in chunks of "
             f"{first['chunk']} (the press compresses after each), then {first['decode_tokens']} greedy tokens "
             "decoded at full cache. Peak memory: " + first["peak_memory_kind"] + ".", "",
             "| press | ppl | ppl last half | ppl vs none | cache positions | KV cache MB | KV ratio | "
             "decode ms/token | tok/s | peak memory MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['press']} | {_fmt(p['ppl'])} | {_fmt(p['ppl_last_half'])} | "
                     f"{p['ppl_increase']:+.1%} | {p['cache_positions_after_prefill']} | {_fmt(p['kv_cache_mb_peak'])} | "
                     f"{_fmt(p['kv_cache_ratio'], 3)} | {_fmt(p['decode_ms_per_token'])} | "
                     f"{_fmt(p['generation_tok_per_s'], 1)} | {_fmt(p['peak_memory_mb'], 1)} |")
    without = ev["model"].get("without_press")
    if without and "tpt_ms" in without and "tpt_ms" in ev["model"]:
        lines += ["", f"Same model without the press: {without['tpt_ms']:.2f} ms/token at the latency settings "
                      f"(with the press: {ev['model']['tpt_ms']:.2f})."]
    base = (ev.get("baseline") or {}).get("long_context")
    if base:
        lines += ["", f"Source without a press (the Score baseline): long-context ppl {base['ppl']:.2f}, "
                      f"decode {base['decode_ms_per_token']:.2f} ms/token."]
    return lines


def _varied_series(points: list[dict], field: str) -> list[tuple[float, float]]:
    """(value, ppl) of the points that differ from the run's press in `field` only (plus the press itself)."""
    main = points[1]["spec"] if len(points) > 1 else None
    if main is None:
        return []
    series = []
    for p in points[1:]:
        spec = p["spec"]
        others = {k: v for k, v in spec.items() if k != field}
        if others == {k: v for k, v in main.items() if k != field} and spec.get(field) is not None:
            series.append((spec[field], p["ppl"]))
    return sorted(set(series))


def plot_long_context(ev: dict, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = ev["model"]["long_context_points"]
    none_ppl = points[0]["ppl"]
    series = {field: s for field in VARIED if len(s := _varied_series(points, field)) > 1}
    panels = list(series) or ["presses"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, field in zip(axes[0], panels):
        if field == "presses":
            ax.bar([p["press"] for p in points], [p["ppl"] for p in points], color="#3b7dd8")
            ax.set_ylabel("perplexity")
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        else:
            xs, ys = zip(*series[field])
            ax.plot(xs, ys, marker="o", color="#3b7dd8", label=points[1]["spec"]["press"])
            ax.axhline(none_ppl, color="#999999", linestyle="--", label="no press")
            if field == "window":
                ax.set_xscale("log", base=2)
            ax.set_xlabel(field)
            ax.set_ylabel("perplexity")
            ax.legend(fontsize=8)
        ax.set_title(f"perplexity vs {field}" if field != "presses" else "perplexity by press", fontsize=9)
    fig.suptitle(f"{title}: {points[0]['tokens']} tokens, chunk {points[0]['chunk']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def plot_name(label: str) -> str:
    return "long_context-" + re.sub(r"[^A-Za-z0-9.]+", "_", label) + ".png"


def write_long_context_plots(report: dict, folder: Path) -> list[Path]:
    written = []
    for label, ev in evaluations(report).items():
        if not ev.get("model", {}).get("long_context_points"):
            continue
        path = Path(folder) / plot_name(label)
        with atomic_file(path, force=True) as tmp:
            plot_long_context(ev, f"{report['recipe']} ({label})", tmp)
        written.append(path)
    return written
