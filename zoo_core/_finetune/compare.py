"""The embedded default: every strategy side by side on the embedded task."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from zoo_core._finetune.defaults import DEFAULT_EPOCHS
from zoo_core._finetune.pipeline import finetune
from zoo_core._finetune.utils import _Printer
from zoo_core.errors import TransferNotRecommendedError

COMPARE_STRATEGIES = ("linear_probe", "partial:1", "finetune", "scratch", "auto")


def run_default(model: str = "zoonet_s", *, per_class: int | None = None,
                epochs: int = DEFAULT_EPOCHS, seed: int = 0,
                strategies: Sequence[str] = COMPARE_STRATEGIES, verbose: bool = True,
                progress: bool = False, threads: int | None = 1) -> list[dict[str, Any]]:
    """The embedded default: fine-tune ``model`` on the few-shot digits 5-9 target task
    with each strategy and print a table (strategy, val accuracy, time).

    Does the transfer-learning table hold on real data? ``auto`` measures the similarity
    and decides; the other rows show what each choice gets. ``threads``: torch threads
    during the run (restored after); one is fastest for 32x32 images on a tiny CNN and
    keeps a busy machine from slowing OpenMP down tenfold (``None``: leave as is).
    """
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        rows = _compare(model, per_class, epochs, seed, strategies, progress)
    finally:
        torch.set_num_threads(before)
    say = _Printer(verbose)
    n = per_class or 10
    say(f"{model} on the embedded target task: digits 5-9 (never seen in pretraining on "
        f"digits 0-4), {n} training images per class, {epochs} epochs, seed {seed}")
    say(f"{'strategy':<14} {'ran as':<14} {'val acc':>8} {'best':>6} {'time':>7}  note")
    for r in rows:
        acc = "-" if r["val_acc"] is None else f"{r['val_acc']:.3f}"
        best = "-" if r["best_val_acc"] is None else f"{r['best_val_acc']:.3f}"
        say(f"{r['strategy']:<14} {r['decided']:<14} {acc:>8} {best:>6} "
            f"{r['seconds']:>6.1f}s  {r['note']}")
    return rows


def _compare(model: str, per_class: int | None, epochs: int, seed: int,
             strategies: Sequence[str], progress: bool) -> list[dict[str, Any]]:
    rows = []
    for s in strategies:
        started = time.perf_counter()
        try:
            _, res = finetune(model, None, strategy=s, epochs=epochs, per_class=per_class,
                              seed=seed, progress=progress, verbose=False)
        except TransferNotRecommendedError as exc:
            rows.append({"strategy": s, "decided": "refused", "val_acc": None,
                         "best_val_acc": None, "seconds": time.perf_counter() - started,
                         "note": "transfer not recommended: "
                                 + _auto_note(getattr(exc, "figures", {}))})
            continue
        note = ""
        if s == "auto":
            note = _auto_note(res.figures) or res.reason
        elif res.feature_cache:
            note = "cached features"
        rows.append({"strategy": s, "decided": res.strategy, "val_acc": res.final_val_acc,
                     "best_val_acc": res.best_val_acc, "seconds": res.wall_seconds,
                     "note": note})
    return rows


def _auto_note(f: Mapping[str, Any]) -> str:
    if f.get("acc_pretrained") is None or f.get("acc_random") is None:
        return ""
    size = "plenty" if f["per_class"] >= f["plenty_per_class"] else "scarce"
    return (f"similarity {f['similarity']:.2f} (NC acc {f['acc_pretrained']:.2f} pretrained "
            f"vs {f['acc_random']:.2f} random features), {f['per_class']:.0f}/class {size}")
