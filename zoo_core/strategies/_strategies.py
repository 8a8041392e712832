"""Transfer-learning strategies: the table for hints, and the freeze recipes.

:func:`decide_strategy` applies the table to *hints* (a similarity the caller states), as
``build_model(..., "auto", num_train_samples=, similarity=)`` does; ``zoo finetune``
measures instead (:mod:`zoo_core.strategies._decide`). Both follow the measured table, not the
seed's literal one: plenty of similar data wants ``finetune``, and a low similarity alone
never refuses (a pretrained init still trains better than scratch on little data).

| target data \\ similarity | high          | low                                  |
|--------------------------|---------------|--------------------------------------|
| plenty                   | finetune      | scratch (keep the architecture only) |
| scarce                   | linear_probe  | finetune                             |

"Frozen" means ``requires_grad=False`` (so an optimizer step leaves it alone), BatchNorm
running statistics that never change even in ``model.train()``, and absence from
:func:`param_groups`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError, StrategyError
from zoo_core.registry._catalog import AutoThresholds

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["Strategy", "apply_strategy", "decide_strategy", "param_groups", "parse_strategy"]

NAMES = ("auto", "linear_probe", "finetune", "partial:K", "first:K", "stage:I", "lp_ft",
         "scratch")
# strategies with a number: partial:K (last K stages), first:K (first K), stage:I (one)
NUMBERED = ("partial", "first", "stage")


@dataclass(frozen=True)
class Strategy:
    kind: str  # auto | linear_probe | finetune | partial | first | stage | lp_ft | scratch
    k: int | None = None

    @property
    def needs_pretrained(self) -> bool:
        return self.kind in ("linear_probe", "finetune", "lp_ft", *NUMBERED)

    def __str__(self) -> str:
        return f"{self.kind}:{self.k}" if self.kind in NUMBERED else self.kind


def parse_strategy(value: str | Strategy) -> Strategy:
    """Parse a strategy name.

    >>> parse_strategy("partial:2")
    Strategy(kind='partial', k=2)
    """
    if isinstance(value, Strategy):
        return value
    if not isinstance(value, str):
        raise InvalidArgumentError(f"strategy must be a string such as 'linear_probe', "
                                   f"got {type(value).__name__}")
    text = value.strip()
    if text in ("auto", "linear_probe", "finetune", "lp_ft", "scratch"):
        return Strategy(text)
    match = re.fullmatch(r"(partial|first|stage):(\d+)", text)
    if match:
        kind, k = match.group(1), int(match.group(2))
        if kind == "partial" and k < 1:
            raise StrategyError("partial:K needs K >= 1 (partial:0 would be linear_probe)")
        if kind == "first" and k < 1:
            raise StrategyError("first:K needs K >= 1 (first:0 would be linear_probe)")
        return Strategy(kind, k)
    import difflib

    generic = {"partial": "partial:K", "first": "first:K", "stage": "stage:I"}
    known = [n for n in NAMES if ":" not in n] + [f"{g}:{i}" for g in generic for i in (1, 2)]
    close = difflib.get_close_matches(text.lower(), known, n=1, cutoff=0.6)
    hint = (f" Did you mean {generic.get(close[0].split(':')[0], repr(close[0]))}?"
            if close else "")
    raise StrategyError(f"unknown strategy {value!r}.{hint} Choose one of {', '.join(NAMES)}")


def decide_strategy(
    *,
    has_pretrained: bool,
    num_train_samples: int | None = None,
    num_classes: int | None = None,
    similarity: float | None = None,
    thresholds: AutoThresholds | None = None,
) -> tuple[str, str]:
    """Apply the transfer-learning table; return ``(strategy, reason)``.

    ``similarity`` in [0, 1] measures how close the target data is to the pretraining
    data (``zoo finetune`` measures instead; here it is a hint). A hint never refuses:
    only measured data with nothing to learn does.

    >>> decide_strategy(has_pretrained=True, num_train_samples=50_000, num_classes=10,
    ...                 similarity=0.1)[0]
    'scratch'
    >>> decide_strategy(has_pretrained=True, num_train_samples=200, num_classes=10,
    ...                 similarity=0.9)[0]
    'linear_probe'
    >>> decide_strategy(has_pretrained=True, num_train_samples=50, num_classes=10,
    ...                 similarity=0.1)[0]
    'finetune'
    """
    t = thresholds or AutoThresholds()
    if similarity is not None and not (0.0 <= float(similarity) <= 1.0):
        raise InvalidArgumentError(f"similarity must be within [0, 1], got {similarity!r}")
    if num_train_samples is not None and (
        isinstance(num_train_samples, bool) or not isinstance(num_train_samples, int)
        or num_train_samples < 1
    ):
        raise InvalidArgumentError(
            f"num_train_samples must be a positive int, got {num_train_samples!r}"
        )
    if not has_pretrained:
        return "scratch", "the model has no pretrained weights, so there is nothing to transfer"
    per_class = None
    if num_train_samples is not None:
        per_class = num_train_samples / max(1, num_classes or 1)
    size = "unknown size" if per_class is None else (
        f"{per_class:.0f} images per class "
        f"({'plenty' if per_class >= t.plenty_per_class else 'scarce'}: threshold "
        f"{t.plenty_per_class})"
    )
    if similarity is None:
        return "linear_probe", (
            f"data: {size}; similarity not given, assumed high — a frozen pretrained backbone "
            "with a new head is the safe default (pass similarity=, or let `zoo finetune` "
            "measure it)"
        )
    similar = similarity >= t.high_similarity
    sim = (f"similarity {similarity:.2f} ({'high' if similar else 'low'}: threshold "
           f"{t.high_similarity})")
    plenty = per_class is not None and per_class >= t.plenty_per_class
    if similar and not plenty:
        return "linear_probe", f"{sim}, {size}: freeze the backbone and train a new head"
    if similar:
        return "finetune", (f"{sim}, {size}: with plenty of similar data, fine-tuning "
                            "everything beats a frozen backbone")
    if plenty:
        return "scratch", (f"{sim}, {size}: pretrained features do not fit this data, and "
                           "there is enough of it to train the architecture from scratch")
    return "finetune", (f"{sim}, {size}: a low similarity alone is no reason to refuse; a "
                        "pretrained init still trains better than scratch on little data "
                        "(zoo finetune measures whether there is anything to learn)")


# -- applying a strategy to a built model ----------------------------------------------

_FROZEN_BN_CLASSES: dict[type, type] = {}


def _locked_train(self: Any, mode: bool = True) -> Any:
    import torch.nn as nn

    return nn.Module.train(self, False)  # running statistics stay as loaded


def _freeze_batchnorm(module: nn.Module) -> None:
    """Keep a BatchNorm in eval mode for good, without changing its state_dict."""
    cls = type(module)
    if getattr(cls, "_zoo_frozen", False):
        return
    frozen = _FROZEN_BN_CLASSES.get(cls)
    if frozen is None:
        qualname = f"Frozen_{cls.__module__.replace('.', '_')}_{cls.__name__}"
        frozen = type(qualname, (cls,), {
            "train": _locked_train, "_zoo_frozen": True, "__module__": __name__,
            "__doc__": f"{cls.__name__} whose running statistics are frozen (always eval).",
        })
        globals()[qualname] = frozen  # picklable by reference
        _FROZEN_BN_CLASSES[cls] = frozen
    module.__class__ = frozen
    module.train(False)


def _groups(model: nn.Module, head: str, stages: tuple[str, ...],
            order: list[str] | None = None) -> dict[str, int]:
    """Map every module path to a group: -1 head, 0..n-1 stage index, n after the last
    stage, -2 a container of stages (see :func:`zoo_core.layout._layout.stage_groups`)."""
    from zoo_core.layout._layout import stage_groups

    return stage_groups(model, head, stages, order)


def apply_strategy(model: nn.Module, strategy: Strategy, *, head: str,
                   stages: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Freeze ``model`` in place per ``strategy``; return (trainable, frozen) param names."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if strategy.kind == "auto":
        raise StrategyError("'auto' must be decided before it is applied")
    n = len(stages)
    _check_range(strategy, stages)
    mods = list(model.named_modules())  # one walk: the groups, parameters and BatchNorms
    groups = _groups(model, head, stages, [path for path, _ in mods])
    trainable_groups = _trainable_groups(strategy, n)
    # a parameter held directly by a container of stages (vit's cls_token, pos_embed) is
    # input-level: it trains with stage 0, or with everything
    everything = -2 in trainable_groups

    trainable, frozen = [], []
    seen: set[int] = set()
    for owner, module in mods:  # model.named_parameters(), read off the same walk
        for leaf, param in module._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{owner}.{leaf}" if owner else leaf
            group = groups.get(owner, n)
            if group == -2 and not everything:
                group = 0
            keep = group in trainable_groups
            if not keep:
                param.requires_grad_(False)
            (trainable if param.requires_grad else frozen).append(name)
    for path, module in mods:
        if isinstance(module, _BatchNorm) and groups.get(path) not in trainable_groups:
            _freeze_batchnorm(module)
    if not trainable:
        raise StrategyError(f"strategy {strategy} leaves no trainable parameter; check the "
                            f"head {head!r} of this model")
    return tuple(trainable), tuple(frozen)


def _check_range(strategy: Strategy, stages: tuple[str, ...]) -> None:
    """A clear error naming the model's stage count for K or I out of range."""
    n, k = len(stages), strategy.k
    listed = ", ".join(f"{i}: {s}" for i, s in enumerate(stages))
    if strategy.kind in ("partial", "first") and k is not None and k > n:
        raise StrategyError(
            f"{strategy} asks for more stages than the model has: it has {n} ({listed}); "
            f"use {strategy.kind}:1..{strategy.kind}:{n}, or finetune")
    if strategy.kind == "stage" and k is not None and k >= n:
        raise StrategyError(
            f"{strategy} names a stage the model does not have: it has {n} stage(s), "
            f"numbered from 0 ({listed}); use stage:0..stage:{n - 1}")


def _trainable_groups(strategy: Strategy, n: int) -> set[int]:
    """The stage groups (:func:`_groups`) a strategy trains: -1 the head, 0..n-1 the
    stages (the stem counts with 0), n what follows the last stage, -2 containers."""
    k = strategy.k
    # lp_ft: everything trains; zoo finetune first trains the head alone on cached
    # features (its first phase), then this model as a whole
    if strategy.kind in ("finetune", "lp_ft", "scratch"):
        return set(range(-2, n + 1))
    if strategy.kind == "linear_probe":
        return {-1}
    assert k is not None
    if strategy.kind == "partial":  # the last K stages (tuning the output end)
        chosen = set(range(n - k, n))
    elif strategy.kind == "first":  # the first K (surgical: the input end)
        chosen = set(range(k))
    else:  # stage:I, one stage
        chosen = {k}
    groups = {-1} | chosen
    if n - 1 in chosen:
        groups.add(n)  # what follows the last stage counts with it
    if chosen == set(range(n)):
        groups.add(-2)
    return groups


def param_groups(model: nn.Module, *, weight_decay: float = 0.0,
                 no_decay_1d: bool = True) -> list[dict[str, Any]]:
    """Optimizer parameter groups holding exactly the trainable parameters.

    Biases and other 1-d parameters (norm scales) get no weight decay, as in timm.

    >>> import torch, zoo_core
    >>> model = zoo_core.build_model("zoonet_s", 3, "linear_probe")
    >>> opt = torch.optim.SGD(param_groups(model, weight_decay=1e-4), lr=0.1)
    >>> sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
    ...     p.numel() for p in model.head.parameters())
    True
    """
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if no_decay_1d and param.ndim <= 1 else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
