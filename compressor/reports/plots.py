"""PNG plots for people (matplotlib, headless)."""

from pathlib import Path

from compressor.evaluate.suite import metric_value


def plot_model_vs_baseline(report: dict, path: Path) -> Path:
    """One panel per weighted task (higher is better, chance level dashed) and one for ms/token (lower is
    better), source beside the output, each bar labelled with its value; a panel of zeros keeps a 0..1 axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = report["eval"]
    panels = [(f"{t['task']}\n{t['metric']} (higher is better)", _metric(ev["baseline"], t["task"], t["metric"]),
               _metric(ev["model"], t["task"], t["metric"]), t.get("chance"), True) for t in ev["perf_tasks"]]
    timing = ev["model"].get("timing", "synthetic")
    panels.append((f"ms/token, {timing} (lower is better)", ev["baseline"]["tpt_ms"], ev["model"]["tpt_ms"], None,
                   False))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (label, base, value, chance, bounded) in zip(axes[0], panels):
        bars = ax.bar(["source", report["recipe"]], [base, value], color=["#999999", "#3b7dd8"])
        ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
        top = max(base, value, chance or 0)
        ax.set_ylim(0, (1.0 if bounded and top <= 0 else top * 1.2) or 1.0)
        if chance is not None:
            ax.axhline(chance, color="#cc6600", linestyle="--", linewidth=1, label=f"chance {chance:g}")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    caveat = "  (CPU timing)" if ev.get("speed_caveat") else ""
    fig.suptitle(f"{report['recipe']}: PerfNorm {ev['perf_norm']:.3f}, SpeedNorm {ev['speed_norm']:.3f}, "
                 f"Score {ev['score']:.3f} ({ev['runtime']}){caveat}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def _metric(measurement: dict, task: str, metric: str) -> float:
    return metric_value(measurement["tasks"][task], metric)
