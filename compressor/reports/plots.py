"""PNG plots for people (matplotlib, headless)."""

from pathlib import Path

from compressor.evaluate.suite import metric_value


def plot_model_vs_baseline(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = report["eval"]
    weighted = _weighted_metrics(ev)
    labels = [f"{t}\n{m}" for t, m in weighted] + ["ms/token"]
    model = [_metric(ev["model"], t, m) for t, m in weighted] + [ev["model"]["tpt_ms"]]
    base = [_metric(ev["baseline"], t, m) for t, m in weighted] + [ev["baseline"]["tpt_ms"]]
    fig, axes = plt.subplots(1, len(labels), figsize=(3 * len(labels), 3.2))
    for ax, label, mv, bv in zip(axes, labels, model, base):
        ax.bar(["source", report["recipe"]], [bv, mv], color=["#999999", "#3b7dd8"])
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"{report['recipe']}: PerfNorm {ev['perf_norm']:.3f}, SpeedNorm {ev['speed_norm']:.3f}, "
                 f"Score {ev['score']:.3f} ({ev['runtime']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def _weighted_metrics(ev: dict):
    return [(t["task"], t["metric"]) for t in ev["perf_tasks"]]


def _metric(measurement: dict, task: str, metric: str) -> float:
    return metric_value(measurement["tasks"][task], metric)
