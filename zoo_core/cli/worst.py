"""``zoo eval``'s ``worst.png``: a grid of the most confident mistakes (fastai's
``plot_top_losses`` idea), each image titled with its true and predicted labels and the
predicted label's probability. matplotlib's Agg canvas, no pyplot state."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WORST_FILE = "worst.png"
DEFAULT_WORST = 16


def most_confident_mistakes(paths: Sequence[str], truth: Sequence[int],
                            pred: Sequence[int], confidence: Sequence[float],
                            labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` misclassified images with the highest predicted probability, most
    confident first (ties: in path order)."""
    wrong = [i for i in range(len(paths)) if truth[i] != pred[i]]
    wrong.sort(key=lambda i: (-confidence[i], paths[i]))
    return [{"image": paths[i], "true": labels[truth[i]], "predicted": labels[pred[i]],
             "confidence": float(confidence[i])} for i in wrong[:k]]


def write_worst(path: Path, rows: Sequence[dict[str, Any]], *, num_images: int) -> None:
    """Draw ``rows`` (from :func:`most_confident_mistakes`) as a grid into ``path``
    (written atomically); with no mistakes, a figure saying so."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zoo_core.data._data import load_rgb

    n = len(rows)
    cols = min(4, max(n, 1))
    grid_rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(2.6 * cols, 2.9 * grid_rows + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    if not rows:
        fig.text(0.5, 0.5, f"no mistakes on {num_images} images", ha="center", va="center")
    else:
        axes = fig.subplots(grid_rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, row in zip(axes.flat, rows, strict=False):
            try:
                ax.imshow(load_rgb(row["image"]))
            except Exception:  # a file gone since scoring: its labels still show
                ax.text(0.5, 0.5, "(unreadable)", ha="center", va="center")
            ax.set_title(f"true {row['true']}\npred {row['predicted']} "
                         f"({row['confidence']:.2f})", fontsize=9, color="tab:red")
        fig.suptitle(f"the {n} most confident mistakes of {num_images} images", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
