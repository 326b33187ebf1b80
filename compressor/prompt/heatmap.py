"""Heatmap PNG of evaluator-head scores (layers x heads), the chosen layer and heads marked."""

import io


def heatmap_png(head_scores: list[list[float]], layer: int, heads: list[int], title: str = "") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scores = np.asarray(head_scores, dtype=float)
    n_layers, n_heads = scores.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * n_heads + 2), max(3.0, 0.22 * n_layers + 1.5)))
    image = ax.imshow(scores, aspect="auto", cmap="viridis", origin="lower")
    fig.colorbar(image, ax=ax, label="attention mass on the needle (last N_o queries)")
    ax.scatter(heads, [layer] * len(heads), marker="s", facecolors="none", edgecolors="red", s=60,
               label=f"evaluator heads (layer {layer})")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title or f"EHPC head scores: L* = {layer}", fontsize=10)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    return buffer.getvalue()
