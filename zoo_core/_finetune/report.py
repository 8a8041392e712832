"""Run outputs: metrics JSON/CSV, curves.png, the best model folder, the Hub push."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core._finetune.results import EpochMetrics
from zoo_core._finetune.utils import _atomic_write_text, _Printer

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


CSV_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
              "images_per_s")


def _write_metrics(out: Path, history: Sequence[EpochMetrics], header: dict[str, Any]) -> None:
    rows = [m.as_dict() for m in history]
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"])) if rows else None
    doc = {**header, "epochs": rows, "best": best}
    _atomic_write_text(out / "metrics.json", json.dumps(doc, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _atomic_write_text(out / "metrics.csv", buf.getvalue())


def _plot(path: Path, history: Sequence[EpochMetrics], title: str) -> None:
    """Loss and accuracy curves (matplotlib's Agg canvas, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [m.epoch for m in history]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [m.train_loss for m in history], marker=".", label="train")
    ax1.plot(epochs, [m.val_loss for m in history], marker=".", label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.legend()
    ax2.plot(epochs, [m.train_acc for m in history], marker=".", label="train")
    ax2.plot(epochs, [m.val_acc for m in history], marker=".", label="val")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.02)
    ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def _save_best(model: nn.Module, best_dir: Path, metrics: dict[str, Any],
               training_data: dict[str, Any]) -> None:
    """save_pretrained into a fresh folder, then swap it in (never a half-written best/)."""
    from zoo_core._hub import save_pretrained

    tmp = best_dir.with_name(f".{best_dir.name}.tmp-{os.getpid()}")
    old = best_dir.with_name(f".{best_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp, metrics=metrics, training_data=training_data)
    if best_dir.exists():
        os.replace(best_dir, old)
    os.replace(tmp, best_dir)
    shutil.rmtree(old, ignore_errors=True)


def _push(model: nn.Module, repo_id: str, out_dir: Path | None,
          history: Sequence[EpochMetrics], training_data: dict[str, Any],
          say: _Printer) -> str | None:
    """Push the best epoch's weights (from ``out/best`` when there is one)."""
    import copy

    from zoo_core._hub import push_to_hub

    best = max(history, key=lambda m: (m.val_acc, -m.epoch))
    to_push = model
    best_file = out_dir / "best" / "model.safetensors" if out_dir is not None else None
    if best_file is not None and best_file.is_file():
        from safetensors.torch import load_file

        to_push = copy.deepcopy(model)
        to_push.load_state_dict(load_file(str(best_file)))
    url = push_to_hub(to_push, repo_id,
                      metrics={"val_accuracy": best.val_acc, "val_loss": best.val_loss,
                               "epoch": best.epoch, "epochs": len(history)},
                      training_data=training_data)
    say(f"pushed      {repo_id}: {url}")
    return str(url) if url is not None else None
