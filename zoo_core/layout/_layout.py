"""Model layout: building on the meta device, resolution stages, and what ``partial:K`` trains.

A *stage* is one resolution stage of the architecture: every module that works at one
feature-map stride, the stem folded into the first stage. Plugins declare each stage by
its last module; :func:`resolution_stages` derives that list from a meta-device forward,
so two providers of one architecture (timm and torchvision resnet, efficientnet, densenet,
convnext) declare stages that hold the same parameters.

Grouping (:func:`stage_groups`): a module before the first declared stage (the stem)
belongs to the first stage; a module between two declared stages belongs to the later
one; a module after the last stage that is not the head (a final norm, a 1x1 conv head)
trains with the last stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["StageTable", "build_on_meta", "forward_order", "resolution_stages", "stage_groups",
           "stage_table"]

_FIRST_STRIDE = 4  # a stage below this stride is the stem: it folds into the next stage


def build_on_meta(construct: Callable[[], Any]) -> nn.Module:
    """Construct a model with its parameters on the meta device (no memory, no init).

    Builders that compute with real tensors while constructing (torchvision's regnet
    computes its widths) still work: they run with real tensors, only the parameters they
    register are created on meta.

    >>> import torch.nn as nn
    >>> build_on_meta(lambda: nn.Linear(4, 2)).weight.device.type
    'meta'
    """
    import torch

    try:
        with torch.device("meta"):
            model = construct()
    except (RuntimeError, NotImplementedError):
        from zoo_core.layout._meta_build import _construct_on_meta

        model, _ = _construct_on_meta(construct)
        model = model.to("meta")  # its buffers too, so a meta-device forward can run
    return model  # type: ignore[no-any-return]


def _meta_input(model: nn.Module, input_size: Sequence[int]) -> Any:
    import torch

    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros((1, *input_size), device="meta", dtype=dtype)


def _run_hooked(model: nn.Module, paths: Sequence[str], input_size: Sequence[int],
                record: Callable[[str, Any], None]) -> None:
    """One meta-device forward with a forward hook on each of ``paths``."""
    import torch

    modules = dict(model.named_modules())

    def hook_for(path: str) -> Callable[..., None]:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            record(path, output)  # returns None: the output is never replaced
        return hook

    handles = [modules[p].register_forward_hook(hook_for(p)) for p in paths if p in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_meta_input(model, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def forward_order(model: nn.Module, paths: Sequence[str],
                  input_size: Sequence[int] = (3, 224, 224)) -> list[str]:
    """``paths`` in the order a forward pass first runs them (a meta-device forward).

    ``model`` must have its parameters on the meta device (see :func:`build_on_meta`).
    A module the forward never runs is left out.

    >>> import torch.nn as nn
    >>> net = build_on_meta(lambda: nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
    >>> forward_order(net, ["1", "0"], (4,))
    ['0', '1']
    """
    # A container whose forward is never called (its owner loops over its children)
    # still runs when any module inside it runs.
    modules = dict(model.named_modules())
    inner = {f"{p}.{n}" if n else p: p for p in paths if p in modules
             for n, _ in modules[p].named_modules()}
    seen: list[str] = []

    def record(path: str, _out: Any) -> None:
        owner = inner[path]
        if owner not in seen:
            seen.append(owner)

    _run_hooked(model, list(inner), input_size, record)
    return seen


def _stride(out: Any, height: int) -> float | None:
    """Feature-map stride of a 4-d output, NCHW or NHWC; None for tokens or tuples."""
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    if shape[2] == shape[3] and 0 < shape[2] <= height:
        size = int(shape[2])
    elif shape[1] == shape[2] and 0 < shape[1] <= height:
        size = int(shape[1])
    else:
        return None
    # unpadded convolutions (inception) shave pixels: 299 -> 73 -> 71 is one stride, 4
    return float(2 ** round(math.log2(height / size)))


def resolution_stages(model: nn.Module, candidates: Sequence[str],
                      input_size: Sequence[int] = (3, 224, 224)) -> tuple[str, ...]:
    """The last candidate module of each resolution stage, input to output.

    ``candidates`` are the architecture's blocks in order (for example the children of
    its ``features``); each is placed by the stride of its output in a meta-device
    forward. Blocks below stride 4 (the stem) fold into the first stage. Models without
    feature maps (a ViT's tokens) keep every candidate as a stage.

    >>> import torch.nn as nn
    >>> net = build_on_meta(lambda: nn.Sequential(
    ...     nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1),
    ...     nn.Conv2d(8, 8, 3, 2, 1)))
    >>> resolution_stages(net, ["0", "1", "2", "3"], (3, 32, 32))
    ('2', '3')
    """
    strides: dict[str, float | None] = {}
    _run_hooked(model, candidates, input_size,
                lambda p, out: strides.setdefault(p, _stride(out, int(input_size[-2]))))
    ordered = [c for c in candidates if c in strides]
    if not ordered or any(strides[c] is None for c in ordered):
        return tuple(candidates)
    last_of: dict[float, str] = {}
    for c in ordered:
        last_of[strides[c]] = c  # type: ignore[index]
    stages = [c for s, c in last_of.items() if s >= _FIRST_STRIDE]
    return tuple(stages) if stages else (ordered[-1],)


def stage_groups(model: nn.Module, head: str, stages: Sequence[str],
                 order: Sequence[str] | None = None) -> dict[str, int]:
    """Map every module path to its group: -1 the head, 0..n-1 a stage, n after the last
    stage (trained with it), -2 a container of stages (its own tensors: vit's cls_token).
    ``order``: the paths of ``model.named_modules()``, when the caller has walked them.
    """
    if order is None:
        order = [name for name, _ in model.named_modules()]
    spans: list[tuple[int, int]] = []  # (index of the stage's last module, stage index)
    for i, stage in enumerate(stages):
        hi = -1
        if stage == "":
            hi = len(order) - 1
        else:
            inner = stage + "."
            for j, path in enumerate(order):
                if path == stage or path.startswith(inner):
                    hi = j
        spans.append((hi, i))
    # containers of stages: every proper dotted prefix of a stage (and the root)
    containers = {".".join(parts[:k]) for parts in (s.split(".") for s in stages)
                  for k in range(1, len(parts))}
    head_inner = head + "."
    out: dict[str, int] = {}
    for pos, path in enumerate(order):
        if head == "" or path == head or path.startswith(head_inner):
            out[path] = -1
            continue
        group = len(stages)
        for hi, i in spans:
            if pos <= hi:
                group = i
                break
        if path == "" or path in containers:
            group = -2
        out[path] = group
    return out


@dataclass(frozen=True)
class StageTable:
    """Parameter counts per stage (what follows the last stage counted with it), the head,
    and how many parameters ``partial:K`` trains for each K (head included)."""

    stages: tuple[str, ...]
    stage_params: tuple[int, ...]
    head: str
    head_params: int
    other_params: int  # tensors held by a container of stages (vit's cls_token, pos_embed)
    total: int

    def partial_trainable(self, k: int) -> int:
        """Parameters ``partial:k`` trains (the last k stages and the head)."""
        n = len(self.stages)
        extra = self.other_params if k >= n else 0
        return sum(self.stage_params[n - k:]) + self.head_params + extra

    def as_dict(self) -> dict[str, Any]:
        return {
            "stages": [{"module": s, "params": p}
                       for s, p in zip(self.stages, self.stage_params, strict=True)],
            "head": {"module": self.head, "params": self.head_params},
            "other_params": self.other_params,
            "total_params": self.total,
            "partial": {f"partial:{k}": self.partial_trainable(k)
                        for k in range(1, len(self.stages) + 1)},
        }

    def lines(self) -> list[str]:
        """A printable table: each stage, and what ``partial:K`` trains when the stage is
        the earliest one it trains (K counts stages from the output end)."""
        n = len(self.stages)
        total = max(self.total, 1)
        out = [f"{'stage':<40} {'params':>12}   {'strategy':<10} {'trains':>12}"]
        for i, (stage, count) in enumerate(zip(self.stages, self.stage_params, strict=True)):
            label = f"{i}: {stage}" + (" (+ stem)" if i == 0 else "")
            label += " (+ after)" if i == n - 1 and n > 1 else ""
            k = n - i
            trains = self.partial_trainable(k)
            out.append(f"{label:<40} {count:>12,}   {'partial:' + str(k):<10} {trains:>12,} "
                       f"({100 * trains / total:.1f}%)")
        out.append(f"{'head: ' + self.head:<40} {self.head_params:>12,}   {'always':<10}")
        if self.other_params:
            out.append(f"{'top-level tensors':<40} {self.other_params:>12,}   "
                       f"{'partial:' + str(n):<10}")
        out.append(f"{'total':<40} {self.total:>12,}")
        return [line.rstrip() for line in out]


def stage_table(model: nn.Module, head: str, stages: Sequence[str]) -> StageTable:
    """Count parameters per stage of ``model`` (meta-device models work too).

    >>> import torch.nn as nn
    >>> net = build_on_meta(lambda: nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2),
    ...                                           nn.Linear(2, 3)))
    >>> t = stage_table(net, "2", ("0", "1"))
    >>> t.stage_params, t.head_params, t.partial_trainable(1)
    ((6, 6), 9, 15)
    """
    stages = tuple(stages)
    n = len(stages)
    groups = stage_groups(model, head, stages)
    counts = [0] * n
    head_params = other = 0
    for name, param in model.named_parameters():
        group = groups.get(name.rpartition(".")[0], n)
        size = param.numel()
        if group == -1:
            head_params += size
        elif group == -2:
            other += size
        elif n:
            counts[min(group, n - 1)] += size
        else:
            other += size
    return StageTable(stages, tuple(counts), head, head_params, other,
                      sum(counts) + head_params + other)
