"""The training recipe, assembled from timm's factories (as timm's ``train.py`` does).

- optimizer: :func:`timm.optim.create_optimizer_v2` (AdamW or SGD; no weight decay on
  norms and biases; optional layer-wise learning-rate decay for ``finetune`` /
  ``partial:K`` / ``lp_ft``). Only trainable parameters enter it: frozen ones are skipped
  by timm's grouping (``requires_grad=False``).
- schedule: :func:`timm.scheduler.create_scheduler_v2` cosine per epoch with linear warmup.
- loss: cross entropy, timm's ``LabelSmoothingCrossEntropy`` with ``smoothing``, or
  ``SoftTargetCrossEntropy`` when Mixup/CutMix mixes the targets.
- :class:`timm.data.Mixup` (off by default) and :class:`timm.utils.ModelEmaV3` (optional).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class Recipe:
    """Every knob of the recipe with its default (the CLI shows these in ``--help``)."""

    opt: str = "adamw"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    layer_decay: float | None = None  # e.g. 0.75: each earlier stage/block gets 0.75x lr
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    smoothing: float = 0.0
    mixup: float = 0.0  # Mixup alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)
    ema_decay: float | None = None  # e.g. 0.998 (None: no EMA)

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def build(cls, value: Recipe | Mapping[str, Any] | None, **overrides: Any) -> Recipe:
        """A recipe from a :class:`Recipe`, a mapping of its fields, or ``None``."""
        if value is None:
            fields: dict[str, Any] = {}
        elif isinstance(value, Recipe):
            fields = value.as_dict()
        elif isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise InvalidArgumentError(
                    f"recipe: unknown field(s) {', '.join(sorted(unknown))}; known: "
                    f"{', '.join(cls.__dataclass_fields__)}")
            fields = dict(value)
        else:
            raise InvalidArgumentError(f"recipe must be a Recipe or a mapping, got "
                                       f"{type(value).__name__}")
        fields.update({k: v for k, v in overrides.items() if v is not None})
        recipe = cls(**fields)
        recipe.check()
        return recipe

    def check(self) -> None:
        def bad(flag: str, why: str) -> InvalidArgumentError:
            return InvalidArgumentError(f"{flag}: {why}")

        if self.opt not in OPTIMIZERS:
            raise bad("--opt", f"choose one of {', '.join(OPTIMIZERS)}, got {self.opt!r}")
        if self.weight_decay < 0:
            raise bad("--weight-decay", f"must be >= 0, got {self.weight_decay}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise bad("--layer-decay", f"must be in (0, 1], got {self.layer_decay}")
        if self.warmup_epochs < 0:
            raise bad("--warmup-epochs", f"must be >= 0, got {self.warmup_epochs}")
        if self.min_lr < 0 or self.warmup_lr < 0:
            raise bad("--min-lr/--warmup-lr", "learning rates must be >= 0")
        if not 0 <= self.smoothing < 1:
            raise bad("--smoothing", f"must be in [0, 1), got {self.smoothing}")
        if self.mixup < 0 or self.cutmix < 0:
            raise bad("--mixup/--cutmix", "alphas must be >= 0 (0 turns them off)")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise bad("--ema", f"decay must be in (0, 1), got {self.ema_decay}")


class _StageMatcher:
    """A model without timm's ``group_matcher``, seen through its zoo stages, so that
    :func:`timm.optim.param_groups_layer_decay` gives one learning-rate layer per stage
    (the stem with the first stage, the head last)."""

    def __init__(self, model: nn.Module) -> None:
        from zoo_core.strategies._strategies import _groups

        self._model = model
        info = model.zoo  # type: ignore[attr-defined]
        self._n = len(info.stages)
        self._groups = _groups(model, info.head, tuple(info.stages))

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.named_parameters(*args, **kwargs)

    def group_matcher(self, coarse: bool = False) -> Any:
        def layer(name: str) -> int:
            group = self._groups.get(name.rpartition(".")[0], self._n)
            if group == -1:
                return self._n + 1  # the head: full learning rate
            return max(group, 0)

        return layer


def create_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> Any:
    """timm's optimizer over the trainable parameters of ``model``."""
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {}
    if recipe.opt == "sgd":
        kwargs["momentum"] = recipe.momentum
    if recipe.layer_decay is not None and recipe.layer_decay < 1:
        from timm.optim import param_groups_layer_decay

        target: Any = model if hasattr(model, "group_matcher") else _StageMatcher(model)
        groups = param_groups_layer_decay(target, weight_decay=recipe.weight_decay,
                                          layer_decay=recipe.layer_decay)
        return create_optimizer_v2(groups, opt=recipe.opt, lr=lr, **kwargs)
    return create_optimizer_v2(model, opt=recipe.opt, lr=lr, weight_decay=recipe.weight_decay,
                               **kwargs)


def create_scheduler(optimizer: Any, recipe: Recipe, epochs: int) -> Any:
    """Cosine per epoch over ``epochs`` with ``warmup_epochs`` of linear warmup.
    ``scheduler.step(e)`` (``e`` from 0) sets epoch ``e``'s rates: stateless, so a resumed
    or extended run recomputes them from the epoch number alone."""
    from timm.scheduler import create_scheduler_v2

    if recipe.warmup_epochs >= epochs and epochs > 1:
        raise InvalidArgumentError(f"--warmup-epochs {recipe.warmup_epochs} must be below "
                                   f"--epochs {epochs}")
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=epochs,
                                       min_lr=recipe.min_lr, warmup_lr=recipe.warmup_lr,
                                       warmup_epochs=recipe.warmup_epochs)
    return scheduler


def create_loss(recipe: Recipe, class_weights: Any = None, device: Any = None) -> Any:
    """The recipe's loss; ``class_weights`` (``balance="loss"``): cross-entropy weighted
    per class, label smoothing kept."""
    import torch
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if class_weights is not None:
        if recipe.mixes:
            from zoo_core.errors import InvalidArgumentError

            raise InvalidArgumentError("--balance loss does not combine with --mixup/--cutmix "
                                       "(soft targets); use --balance sampler")
        w = torch.tensor(list(class_weights), dtype=torch.float32, device=device)
        return torch.nn.CrossEntropyLoss(weight=w, label_smoothing=float(recipe.smoothing))
    if recipe.mixes:
        return SoftTargetCrossEntropy()  # Mixup hands over smoothed soft targets
    if recipe.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.smoothing)
    return torch.nn.CrossEntropyLoss()


def create_mixup(recipe: Recipe, num_classes: int) -> Any:
    if not recipe.mixes:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix,
                 label_smoothing=recipe.smoothing, num_classes=num_classes)


def create_ema(model: nn.Module, recipe: Recipe) -> Any:
    if recipe.ema_decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=recipe.ema_decay)
