"""auto's race: the table strategies train their first epochs, the leader is kept.

Where auto's measurement found something to learn, the four strategies of the
transfer-learning table (``linear_probe``, ``partial:1``, ``finetune``, ``scratch``) each
train the first ``k`` epochs of their own schedule (``k = max(1, round(race_fraction *
E))``, the learning-rate schedule still spanning all ``E`` epochs; ``linear_probe``'s head
is solved in one step, so it races in full), on the run's own training and validation
images. The one with the best validation accuracy after its epoch ``k`` wins (a tie: the
lower validation loss, then the table's order), and the run then trains it from the start,
with the same seed: the model it ends with is the explicit run of that strategy.

Off by default (``race_fraction = 0``): measured on four benchmark parts
(``benchmarks/bench_auto_race.py``, benchmarks/README.md "Racing the strategies", stop 25),
a short race does not pick better than always fine-tuning: after a few epochs the frozen
strategies lead and ``finetune`` overtakes them later. Raced to the end (``1.0``: every
strategy trained in full, the best on validation kept, then trained again as the run) it
picked better: 73 of 90 task-seeds against 56 for always ``finetune`` over five parts, 14
of 18 against 10 on the one part written blind to it (fresh13, three seeds), for about
five runs' time instead of one: an opt-in for those who would otherwise try the four by
hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zoo_core.train._utils import _Printer

# (strategy, folder, race_fraction) -> {"epoch", "epochs", "val_acc", "val_loss"} of a
# quiet, file-less run stopped after its epoch k (zoo_core.train._pipeline.make_race)
RaceFn = Callable[[str, Any, float], dict[str, Any]]
RACED = ("linear_probe", "partial:1", "finetune", "scratch")


def race_epoch(fraction: float, epochs: int) -> int:
    """The epoch a race stops at: ``max(1, round(fraction * epochs))``, at most ``epochs``.

    >>> race_epoch(0.07, 30), race_epoch(0.07, 10), race_epoch(0.5, 1)
    (2, 1, 1)
    """
    return min(epochs, max(1, round(fraction * epochs)))


def run_race(folder: Any, *, fraction: float, race: RaceFn, say: _Printer,
             candidates: tuple[str, ...] = RACED) -> tuple[str, dict[str, Any]]:
    """Race ``candidates`` on ``folder``; returns ``(leader, figures)``."""
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for s in candidates:
        runs[s] = r = race(s, folder, fraction)
        say(f"race        {s}: val acc {r['val_acc']:.3f} (loss {r['val_loss']:.4f}) after "
            f"epoch {r['epoch']}/{r['epochs']}")
    leader = max(candidates, key=lambda s: (runs[s]["val_acc"], -runs[s]["val_loss"]))
    return leader, {"candidates": list(candidates), "fraction": fraction, "runs": runs,
                    "num_val": len(folder.val),
                    "seconds": round(time.perf_counter() - started, 3)}


def race_note(info: dict[str, Any]) -> str:
    """The race's figures in one clause, for the decision's reason.

    >>> race_note({"num_val": 90, "runs": {"finetune": {"epoch": 2, "epochs": 30,
    ...     "val_acc": 0.8, "val_loss": 0.61}, "scratch": {"epoch": 2, "epochs": 30,
    ...     "val_acc": 0.5, "val_loss": 1.2}}})
    'race on 90 validation images: finetune 0.800 (epoch 2/30), scratch 0.500 (epoch 2/30)'
    """
    runs = ", ".join(f"{s} {r['val_acc']:.3f} (epoch {r['epoch']}/{r['epochs']})"
                     for s, r in info["runs"].items())
    return f"race on {info['num_val']} validation images: {runs}"
