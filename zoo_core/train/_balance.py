"""Class imbalance: a warning when the training classes differ by more than
:data:`IMBALANCE_RATIO`, and ``balance="sampler"`` (each epoch draws images with
replacement, weighted by the inverse of their class's size: PyTorch's
``WeightedRandomSampler`` recipe) or ``balance="loss"`` (cross-entropy with class
weights ``n / (k * n_c)``, scikit-learn's ``"balanced"``; the L-BFGS probe gets the same
weights per sample)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from zoo_core.errors import DatasetWarning, InvalidArgumentError

BALANCES = ("sampler", "loss")
IMBALANCE_RATIO = 3.0


class ClassImbalanceWarning(DatasetWarning):
    """The training classes differ in size by more than 3x."""


def check_balance(balance: str | None) -> str | None:
    if balance is None or balance in BALANCES:
        return balance
    raise InvalidArgumentError(f"--balance / balance must be one of {', '.join(BALANCES)} "
                               f"(or left out), got {balance!r}")


def class_counts(labels: Sequence[int], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for label in labels:
        counts[int(label)] += 1
    return counts


def class_weights(counts: Sequence[int]) -> list[float]:
    """``n / (k * n_c)`` for each class present (0 for an absent one)."""
    n, k = sum(counts), sum(1 for c in counts if c)
    return [n / (k * c) if c else 0.0 for c in counts]


def warn_imbalance(counts: Sequence[int], classes: Sequence[str],
                   balance: str | None) -> str | None:
    """Warn when the largest training class has over 3x the images of the smallest;
    returns the line for the run's log (None when balanced)."""
    present = [(c, name) for c, name in zip(counts, classes, strict=True) if c]
    if len(present) < 2:
        return None
    (lo, lo_name), (hi, hi_name) = min(present), max(present)
    if hi <= IMBALANCE_RATIO * lo:
        return None
    what = (f"training classes are imbalanced: {hi_name!r} has {hi} images, {lo_name!r} "
            f"{lo} ({hi / lo:.1f}x)")
    if balance is not None:
        return f"balance     {what}; balanced with --balance {balance}"
    warnings.warn(f"{what}; accuracy will favour the large classes. Pass --balance sampler "
                  "(oversample the small classes) or --balance loss (class-weighted loss)",
                  ClassImbalanceWarning, stacklevel=3)
    return None


def balanced_order(labels: Sequence[int], *, seed: int, epoch: int, world: int,
                   rank: int) -> list[int]:
    """This rank's indices for one epoch under ``balance="sampler"``: ``len(labels)``
    draws with replacement, weights the inverse of the class size (the same draw on every
    rank, seeded by seed and epoch), split across ranks like ``DistributedSampler``."""
    import torch

    counts = class_counts(labels, max(labels) + 1 if len(labels) else 0)
    weights = torch.tensor([1.0 / counts[y] for y in labels], dtype=torch.double)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + 17)
    order = torch.multinomial(weights, len(labels), replacement=True, generator=gen).tolist()
    total = -(-len(order) // world) * world
    order += order[:total - len(order)]
    return order[rank:total:world]



def note_imbalance(folder: Any, balance: str | None, say: Any, main: bool) -> None:
    """The imbalance warning (rank 0), or the line saying how it is balanced."""
    if not main:
        return
    counts = class_counts([label for _, label in folder.train], folder.num_classes)
    line = warn_imbalance(counts, folder.classes, balance)
    if line:
        say(line)
