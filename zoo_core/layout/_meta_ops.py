"""What the construction recorder (:mod:`zoo_core.layout._meta_build`) knows about ops.

Which calls initialise a tensor in place, which only touch metadata, which change a
parameter's shape or storage, which fully overwrite a tensor, which hand out
uninitialised memory; and how to find the tensors in a call's arguments quickly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

# Public ``torch.nn.init`` functions that fill a tensor in place. The ones that are not
# torch-function overridable (trunc_normal_, xavier_*, kaiming_normal_, zeros_, ...) and
# those that return early on meta tensors never show their ops to ``__torch_function__``,
# so they are wrapped (module attribute) for the duration of a fast build.
_NN_INIT_FUNCS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)

# In-place ops that only touch metadata: run them on the meta parameter (requires_grad_
# must stick, it is part of what the architecture sets).
_METADATA_INPLACE_OK = frozenset({"requires_grad_", "retain_grad", "detach_", "share_memory_"})
# In-place ops that change a parameter's shape/storage: the recorded init can no longer be
# trusted for that parameter.
_METADATA_INPLACE_TAINT = frozenset(
    {
        "set_",
        "resize_",
        "resize_as_",
        "as_strided_",
        "squeeze_",
        "unsqueeze_",
        "transpose_",
        "t_",
        "swapdims_",
        "swapaxes_",
        "rename_",
        "_coalesced_",
    }
)
_INPLACE_DUNDERS = frozenset(
    {
        "__setitem__",
        "__iadd__",
        "__isub__",
        "__imul__",
        "__itruediv__",
        "__ifloordiv__",
        "__imod__",
        "__ipow__",
        "__iand__",
        "__ior__",
        "__ixor__",
        "__ilshift__",
        "__irshift__",
        "__imatmul__",
    }
)
# Recorded ops after which every element has a value that does not depend on the previous
# content: a parameter whose first recorded op is one of these needs no initial value.
_FULL_OVERWRITE = frozenset(
    {
        "uniform_",
        "normal_",
        "fill_",
        "zero_",
        "copy_",
        "random_",
        "bernoulli_",
        "exponential_",
        "geometric_",
        "log_normal_",
        "cauchy_",
        "_assign_value",
        *_NN_INIT_FUNCS,
    }
)
_EMPTY_FACTORIES = frozenset({"empty", "empty_like", "new_empty", "empty_strided"})
_ALIAS_OPS = frozenset({"detach"})

# The factories of uninitialised memory, wrapped (module/class attribute) for a fast build.
# A parameter made from memory that none of them handed out (a factory bound by name
# before the build, torch.Tensor(n)) counts as created from real values: a head replay
# then starts from that memory, as the normal path's init does.
_EMPTY_SITES = ((torch, "empty"), (torch, "empty_like"), (torch, "empty_strided"),
                (torch.Tensor, "new_empty"))

# Calls that only read metadata and return no tensor: nothing to record, skip, alias or
# taint (``is_meta`` and ``.data`` are NOT here: dispatch watches them).
_PASSTHROUGH = frozenset(
    id(f) for f in (
        torch.Tensor.dim,
        torch.Tensor.size,
        torch.Tensor.numel,
        torch.Tensor.stride,
        torch.Tensor.is_contiguous,
        torch.Tensor.is_floating_point,
        torch.Tensor.is_complex,
        torch.Tensor.__hash__,
        torch.Tensor.__repr__,
    )
)
# Property reads arrive as ``<descriptor>.__get__`` (a new bound wrapper each time): keyed
# by the descriptor.
_PASSTHROUGH_PROPS = frozenset(
    id(getattr(torch.Tensor, name))
    for name in ("shape", "ndim", "dtype", "device", "grad_fn", "requires_grad", "is_leaf",
                 "grad", "layout")
)


def _assign_value(target: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Replayable stand-in for ``param.data = value`` and for a param's initial value."""
    return target.copy_(value)


def _is_inplace(name: str) -> bool:
    if name in _INPLACE_DUNDERS:
        return True
    return name.endswith("_") and not name.endswith("__")


# Argument types that hold no tensor: skipped before the (slower) container checks. Most
# arguments during construction are sizes, dtypes and devices.
_LEAF_TYPES = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device,
                         torch.layout, torch.memory_format})
_NO_ROOTS: frozenset[int] = frozenset()


def _iter_tensors(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    """The tensors in ``obj``, in lists/tuples/mappings up to two levels deep, in order."""
    out: list[torch.Tensor] = []
    _collect_tensors(obj, depth, out)
    return out


def _collect_tensors(obj: Any, depth: int, out: list[torch.Tensor]) -> None:
    tp = type(obj)
    if tp in _LEAF_TYPES:
        return
    if tp is tuple or tp is list or tp is dict:  # (exact types: no isinstance/ABC checks)
        items = obj.values() if tp is dict else obj
    elif isinstance(obj, torch.Tensor):
        out.append(obj)
        return
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif isinstance(obj, Mapping):
        items = obj.values()
    else:
        return
    if depth >= 2:
        return
    for item in items:
        if type(item) not in _LEAF_TYPES:
            _collect_tensors(item, depth + 1, out)
