"""Every argument of one finetune() call, in one frozen record (run.json's source)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.train._recipe import Recipe


@dataclass(frozen=True)
class _Options:
    """Every argument of one finetune() call (recorded in run.json)."""

    model: str
    data: Any
    strategy: str
    epochs: int
    batch_size: int
    lr: float | None
    out: Path | None
    seed: int
    val_fraction: float
    per_class: int | None
    weights: Any
    cache_features: bool
    augment: Any
    push_to_hub: str | None
    resume: bool
    overwrite: bool
    num_workers: int
    progress: bool
    verbose: bool
    force: bool
    sync_bn: bool
    input_size: tuple[int, int, int] | None
    precision: str
    accumulate: int
    threads: int
    recipe: Recipe
    early_stop: int | None
    keep: int
    log_with: str | None
    lp_epochs: int | None
    probe_solver: str
    extra: dict[str, Any] = field(default_factory=dict)
    balance: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    race: float | None = None  # auto's race fraction for this run (None: the registry's)

    def hyperparameters(self, kind: str, lr: float, epochs: int) -> dict[str, Any]:
        return {"model": self.model, "strategy": kind, "requested_strategy": self.strategy,
                "epochs": epochs, "batch_size": self.batch_size, "lr": lr, "seed": self.seed,
                "val_fraction": self.val_fraction, "per_class": self.per_class,
                "weights": None if self.weights is None else str(self.weights),
                "cache_features": self.cache_features,
                "augment": self.augment if isinstance(self.augment, Mapping)
                else bool(self.augment),
                "precision": self.precision, "accumulate": self.accumulate,
                "threads": self.threads, "num_workers": self.num_workers,
                "early_stop": self.early_stop, "keep": self.keep,
                "input_size": list(self.input_size) if self.input_size else None,
                "sync_bn": self.sync_bn, "lp_epochs": self.lp_epochs,
                "probe_solver": self.probe_solver, "balance": self.balance,
                "model_args": dict(self.model_kwargs), **self.recipe.as_dict()}
