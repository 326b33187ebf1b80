"""`compressor importance MODEL`: score layers, heads, KV groups, neurons and channels; table, JSON, heatmap."""

import json
import re
from pathlib import Path

import torch

from compressor.core.atomic import atomic_file
from compressor.core.layout import IMPORTANCE_JSON, IMPORTANCE_PNG, resolve
from compressor.data.calibration import CalibrationSpec, calibration_windows
from compressor.data.corpus import check_corpus
from compressor.edits.importance import collect_importance
from compressor.models.adapters import adapter_for
from compressor.models.checkpoint import check_model_folder
from compressor.models.sources import load_model, pick_device, resolve_source


def resolve_model(ref: str) -> tuple[Path, Path | None]:
    """(model folder, output folder it belongs to or None) for an output folder, an HF folder or a source id."""
    path = Path(ref).expanduser()
    if path.exists():
        folder = resolve(path)
        return folder.model, folder.output
    return resolve_source(ref).path, None


def score_model(ref: str, spec: CalibrationSpec, out_dir: Path | None, device: str, progress) -> dict:
    """Score REF's model on calibration windows; write importance.json and importance.png; returns the JSON."""
    check_corpus(spec.split, spec.corpus)  # an unknown split fails here, before the model loads
    folder, output = resolve_model(ref)
    check_model_folder(folder)
    out = default_out(ref, output if out_dir is None else out_dir)
    scores, config = compute(folder, spec, pick_device(device), progress)
    result = {"model": str(folder), "calibration": spec.model_dump(), **summary(scores, config),
              "scores": scores.to_json()}
    with atomic_file(out / IMPORTANCE_JSON, force=True) as staging:
        staging.write_text(json.dumps(result, indent=1) + "\n")
    result["png"] = str(plot(scores, out / IMPORTANCE_PNG, str(ref)))
    result["json"] = str(out / IMPORTANCE_JSON)
    return result


def default_out(ref: str, output_dir: Path | None) -> Path:
    return output_dir or Path("out") / ("importance-" + re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-"))


def compute(folder: Path, spec, device, progress=lambda message: None):
    progress(f"loading {folder}")
    model, tokenizer = load_model(folder, device)
    windows = calibration_windows(tokenizer, spec)
    progress(f"scoring on {len(windows)} windows of {spec.seq_len} tokens ({spec.split} split)")
    return collect_importance(model, adapter_for(model.config), windows, progress=progress), model.config


def summary(importance, config) -> dict:
    """Per-layer rows and a hidden-channel line, for the table and the JSON."""
    rows = []
    for index in range(len(importance.heads)):
        heads, neurons = importance.heads[index], importance.neurons[index]
        rows.append({
            "layer": index,
            "block_influence": round(importance.block_influence[index], 4),
            "angular_to_next": round(importance.angular_distance[index], 4),
            "heads_weakest_first": torch.argsort(heads).tolist(),
            "head_min": round(float(heads.min()), 3), "head_max": round(float(heads.max()), 3),
            "kv_groups": [round(v, 3) for v in importance.kv_groups[index].tolist()],
            "neuron_median": round(float(neurons.median()), 4),
            "neuron_top_half_share": round(float(torch.topk(neurons, len(neurons) // 2).values.sum() / neurons.sum()), 4),
        })
    channels = importance.channels
    order = torch.argsort(channels)
    top_half = torch.topk(channels, len(channels) // 2).values.sum() / channels.sum()
    return {"layers": rows, "channels": {"hidden_size": config.hidden_size, "weakest": order[:8].tolist(),
                                         "strongest": order.flip(0)[:8].tolist(),
                                         "top_half_share": round(float(top_half), 4)}}


def rich_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("layer", "BI", "angular", "weakest heads", "head scores", "KV groups", "neurons: top half"):
        table.add_column(column, justify="left" if column in ("weakest heads", "KV groups") else "right",
                         overflow="fold")
    for r in rows:
        table.add_row(str(r["layer"]), f"{r['block_influence']:.3f}", f"{r['angular_to_next']:.3f}",
                      ",".join(map(str, r["heads_weakest_first"][:3])), f"{r['head_min']:.1f}-{r['head_max']:.1f}",
                      "/".join(f"{v:.1f}" for v in r["kv_groups"][:8]) + ("/…" if len(r["kv_groups"]) > 8 else ""),
                      f"{r['neuron_top_half_share']:.0%}")
    table.caption = ("Higher = more important = kept. Pruning keeps the highest-scoring heads, KV groups, neurons "
                     "and channels; drop_layers removes the layers of lowest BI (block influence) or the block of "
                     "smallest angular distance. 'weakest heads' are the first to go.")
    table.caption_justify = "left"
    return table


def plot(importance, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    def positive(t):
        return t.clamp_min(float(t[t > 0].min()) if (t > 0).any() else 1e-12).numpy()

    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    ax = axes[0, 0]
    ax.plot(importance.block_influence, label="Block Influence", marker=".")
    ax.plot(importance.angular_distance, label="angular distance to next", marker=".")
    ax.set(title="layers", xlabel="layer")
    ax.legend(fontsize=8)
    panels = [(axes[0, 1], importance.heads, "attention heads", "query head", False),
              (axes[0, 2], importance.kv_groups, "KV groups", "KV group", False),
              (axes[1, 0], importance.neurons, "MLP neurons (log)", "neuron", True),
              (axes[1, 1], importance.channels_by_norm, "hidden channels per norm (log)", "channel", True)]
    for ax, data, name, xlabel, log in panels:
        image = ax.imshow(positive(data), aspect="auto", interpolation="nearest", cmap="viridis",
                          norm=LogNorm() if log else None)
        ax.set(title=name, xlabel=xlabel, ylabel="norm (layer order)" if "norm" in name else "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(image, ax=ax, fraction=0.046)
    ax = axes[1, 2]
    ax.plot(torch.sort(importance.channels, descending=True).values.numpy())
    ax.set(title="hidden channels, summed over norms (sorted)", xlabel="rank", yscale="log")
    fig.suptitle(f"{title}: Minitron activation importance (L2 over windows of mean |activation|), "
                 f"{importance.windows} windows, {importance.tokens} tokens", fontsize=11)
    fig.tight_layout()
    with atomic_file(Path(path), force=True) as staging:
        fig.savefig(staging, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
