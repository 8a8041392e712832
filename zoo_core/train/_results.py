"""What a finetune run returns: per-epoch figures and the run's result record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EpochMetrics:
    """Figures of one epoch (``epoch`` counts from 1)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float
    val_images: int = 0  # validation images evaluated (each exactly once across ranks)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneResult:
    """What a :func:`finetune` run did and measured."""

    model: str
    strategy: str
    requested_strategy: str
    reason: str
    forced: bool
    figures: Mapping[str, Any]
    history: tuple[EpochMetrics, ...]
    best_val_acc: float
    best_epoch: int
    final_val_acc: float
    wall_seconds: float
    train_seconds: float
    images_per_s: float
    feature_cache: bool
    path: str  # how training ran, in words
    num_classes: int
    label_names: tuple[str, ...]
    num_train: int
    num_val: int
    skipped: tuple[tuple[str, str], ...] = ()
    out_dir: str | None = None
    metrics_json: str | None = None
    metrics_csv: str | None = None
    plot_png: str | None = None
    best_dir: str | None = None
    checkpoint_dir: str | None = None
    hub_url: str | None = None
    resumed_from_epoch: int | None = None
    world_size: int = 1
    device: str = "cpu"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"model      {self.model}  ({self.num_classes} classes, {self.num_train} train / "
            f"{self.num_val} val images)",
            f"strategy   {self.strategy}{' (forced)' if self.forced else ''}: {self.reason}",
            f"training   {self.path}",
            f"best       val acc {self.best_val_acc:.4f} at epoch {self.best_epoch}/"
            f"{len(self.history)} (final {self.final_val_acc:.4f})",
            f"time       {self.wall_seconds:.1f} s wall, {self.images_per_s:,.0f} train "
            f"images/s, {self.world_size} process(es) on {self.device}",
        ]
        if self.skipped:
            lines.append(f"skipped    {len(self.skipped)} file(s): unreadable, not an image "
                         "or a symlink not followed (listed in the warnings and .skipped)")
        for label, value in (("outputs", self.out_dir), ("best", self.best_dir),
                             ("hub", self.hub_url)):
            if value:
                lines.append(f"{label:<10} {value}")
        return "\n".join(lines)
