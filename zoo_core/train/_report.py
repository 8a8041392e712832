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

from zoo_core.train._results import EpochMetrics
from zoo_core.train._utils import _atomic_write_text, _Printer

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


CSV_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
              "images_per_s", "val_images")


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
    """Loss and accuracy curves, redrawn after every epoch (matplotlib's Agg canvas, no
    pyplot global state): best epoch marked, light grid, learning rate on a second axis,
    validation size with best and final accuracy in the title, whole-number epochs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not history:
        return
    epochs = [m.epoch for m in history]
    best = max(history, key=lambda m: (m.val_acc, -m.epoch))
    fig = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [m.train_loss for m in history], marker=".", label="train")
    ax1.plot(epochs, [m.val_loss for m in history], marker=".", label="val")
    ax1.set_ylabel("cross-entropy loss")
    ax2.plot(epochs, [m.train_acc for m in history], marker=".", label="train")
    ax2.plot(epochs, [m.val_acc for m in history], marker=".", label="val")
    ax2.plot([best.epoch], [best.val_acc], marker="*", markersize=14, color="C3",
             linestyle="none", label=f"best (epoch {best.epoch})")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.02)
    for ax in (ax1, ax2):
        ax.axvline(best.epoch, color="C3", alpha=0.25, linewidth=1)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lr_ax = ax1.twinx()
    lr_ax.plot(epochs, [m.lr for m in history], color="0.55", linestyle="--", linewidth=1,
               label="learning rate")
    lr_ax.set_ylabel("learning rate", color="0.45")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    handles = ax1.get_legend_handles_labels()
    lr_handles = lr_ax.get_legend_handles_labels()
    ax1.legend(handles[0] + lr_handles[0], handles[1] + lr_handles[1], fontsize=8)
    ax2.legend(fontsize=8, loc="lower right")
    n_val = history[-1].val_images
    fig.suptitle(f"{title}\nval {n_val} images · best {best.val_acc:.3f} (epoch "
                 f"{best.epoch}) · final {history[-1].val_acc:.3f}", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_best(model: nn.Module, best_dir: Path, metrics: dict[str, Any],
               training_data: dict[str, Any], card: str | None = None) -> None:
    """save_pretrained into a fresh folder, then swap it in (never a half-written best/)."""
    from zoo_core.hub._hub import save_pretrained
    tmp = best_dir.with_name(f".{best_dir.name}.tmp-{os.getpid()}")
    old = best_dir.with_name(f".{best_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_pretrained(model, tmp, metrics=metrics, training_data=training_data,
                        model_card_extra=card)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if best_dir.exists():
        os.replace(best_dir, old)
    os.replace(tmp, best_dir)
    shutil.rmtree(old, ignore_errors=True)


def _push(model: nn.Module, repo_id: str, out_dir: Path | None,
          history: Sequence[EpochMetrics], training_data: dict[str, Any],
          say: _Printer, card: str | None = None) -> str | None:
    """Push the best epoch's weights (from ``out/best`` when there is one)."""
    import copy

    from zoo_core.hub._hub import push_to_hub

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
                      training_data=training_data, model_card_extra=card)
    say(f"pushed      {repo_id}: {url}")
    return str(url) if url is not None else None
