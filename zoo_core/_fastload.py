"""Fast, zero-copy "construct + load pretrained weights" for the model builder.

``build_and_load(construct, weights_path, head=...)`` returns the model built by
``construct()`` (architecture at the TARGET ``num_classes``) with the safetensors file
loaded into it, and a :class:`LoadReport`.

Fast path (``fast=True``, the default)

1. ``construct()`` runs with ``nn.Module.register_parameter`` patched so that every
   parameter is moved to the ``meta`` device as soon as it is registered (buffers stay
   real, so non-persistent buffers such as swin's ``relative_position_index`` are computed
   as usual), while a :class:`torch.overrides.TorchFunctionMode` (plus thin wrappers around
   the public ``torch.nn.init`` functions) skips the data-only initialisation ops on those
   meta parameters and RECORDS them per parameter (``.data``/``.detach()`` aliases are
   followed).
2. The file is memory-mapped (``safetensors.torch.load_file`` maps the file in
   safetensors 0.8.0: the returned CPU tensors point into the mapping, nothing is read
   until touched) and assigned with ``load_state_dict(strict=False, assign=True)``, after
   an on-purpose cast wherever the file's dtype differs from the model's.
3. The same strict key checks as the normal path are applied; head parameters whose shape
   differs from the file's (new ``num_classes``) are materialised on CPU and the recorded
   init ops are replayed on them, so the new head is initialised the way the architecture
   initialises it.
4. Anything left on ``meta`` (parameter, buffer, tensor attribute) or any head parameter
   whose init cannot be replayed makes the build fall back to the normal path; a model
   that would read uninitialised memory is never returned.

Normal path: ``construct()``, load the file, drop mismatching head keys,
``load_state_dict(strict=False)`` (copies), then the same strict key checks.

Parameters returned by the fast path are backed by the mapped file (a private,
copy-on-write mapping: training never writes to the file). Whoever manages the weight cache
must therefore replace cache files only by writing a new file and renaming it over the old
one, never by truncating or rewriting a file in place (a mapped page could change or raise
SIGBUS).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from zoo_core._adapt_weights import Adapter
from zoo_core._load_checks import check_dtypes, split_head
from zoo_core._safetensors_header import printable
from zoo_core.errors import WeightsError

__all__ = ["LoadReport", "build_and_load"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 10


@dataclass(frozen=True)
class LoadReport:
    """How ``build_and_load`` built the model.

    >>> LoadReport(True, None, (), "float32", 0.01).fast_path
    True
    """

    fast_path: bool  # True if the meta/mmap/assign path was used
    fallback_reason: str | None  # why the normal path was used instead
    dropped_head_keys: tuple[str, ...]  # head keys in the file not loaded (num_classes differs)
    weights_dtype: str  # dtype found in the file
    seconds: float


class _FastPathUnsupported(Exception):
    """Internal: the fast path cannot build this model faithfully; use the normal path."""


# ----------------------------------------------------------------------------------------
# Recording construction with meta parameters
# ----------------------------------------------------------------------------------------

# Public ``torch.nn.init`` functions that fill a tensor in place. The ones that are not
# torch-function overridable (trunc_normal_, xavier_*, kaiming_normal_, zeros_, ...) and
# those that return early on meta tensors never show their ops to a TorchFunctionMode, so
# they are wrapped (module attribute) for the duration of a fast build.
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
_ORIG_NN_INIT = {name: getattr(nn.init, name) for name in _NN_INIT_FUNCS}
_ORIG_REGISTER_PARAMETER = nn.Module.register_parameter

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


def _assign_value(target: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Replayable stand-in for ``param.data = value`` and for a param's initial value."""
    return target.copy_(value)


def _is_inplace(name: str) -> bool:
    if name in _INPLACE_DUNDERS:
        return True
    return name.endswith("_") and not name.endswith("__")


def _iter_tensors(obj: Any, depth: int = 0) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 2 and isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _iter_tensors(item, depth + 1)
    elif depth < 2 and isinstance(obj, Mapping):
        for item in obj.values():
            yield from _iter_tensors(item, depth + 1)


class _Recorder:
    """Per-build bookkeeping: meta roots, aliases, recorded init ops, taints."""

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.roots: dict[int, nn.Parameter] = {}  # id(meta param) -> meta param
        self.alias: dict[int, int] = {}  # id(alias tensor) -> id(root)
        self.derived: dict[int, set[int]] = {}  # id(view/derived meta tensor) -> root ids
        self.keep: list[torch.Tensor] = []  # keeps aliases/derived alive so ids stay unique
        self.ops: dict[int, list[tuple[Callable[..., Any], tuple, dict]]] = {}
        self.initial: dict[int, torch.Tensor] = {}  # id(root) -> real value it was created with
        self.tainted: dict[int, str] = {}  # id(root) -> why its init cannot be replayed
        self.empty_ptrs: set[int] = set()  # data_ptrs handed out by torch.empty & co.
        self.converted: dict[int, tuple[weakref.ref, nn.Parameter]] = {}

    # -- lookups -------------------------------------------------------------------------
    def root_id(self, t: Any) -> int | None:
        if not isinstance(t, torch.Tensor):
            return None
        i = id(t)
        if i in self.roots:
            return i
        return self.alias.get(i)

    def derived_roots(self, t: Any) -> set[int]:
        if not isinstance(t, torch.Tensor):
            return set()
        return self.derived.get(id(t), set())

    def taint(self, root: int, why: str) -> None:
        self.tainted.setdefault(root, why)

    def record(self, root: int, func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.ops[root].append((func, tuple(args), dict(kwargs)))

    # -- registration --------------------------------------------------------------------
    def to_meta(self, p: nn.Parameter) -> nn.Parameter:
        if p.device.type == "meta":
            if id(p) not in self.roots:  # created on meta by the architecture itself
                self._add_root(p, None)
            return p
        prior = self.converted.get(id(p))
        if prior is not None and prior[0]() is p:  # same real Parameter registered twice
            return prior[1]
        if type(p) is not nn.Parameter:
            raise _FastPathUnsupported(
                f"parameter of type {type(p).__qualname__} (only plain nn.Parameter is supported)"
            )
        initial = None
        if p.numel() and p.data_ptr() not in self.empty_ptrs:
            initial = p.detach()  # created from real values (zeros, ones, randn*std, ...)
        meta = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        meta.__dict__.update(p.__dict__)
        self._add_root(meta, initial)
        self.converted[id(p)] = (weakref.ref(p), meta)
        return meta

    def _add_root(self, meta: nn.Parameter, initial: torch.Tensor | None) -> None:
        i = id(meta)
        self.roots[i] = meta
        self.ops[i] = []
        if initial is not None:
            self.initial[i] = initial

    # -- interception --------------------------------------------------------------------
    def intercept_init(self, orig: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """A public nn.init function was called: record it if it targets a meta param."""
        t = args[0] if args else kwargs.get("tensor")
        root = self.root_id(t)
        if root is not None:
            self.record(root, orig, args, kwargs)
            return t
        droots = self.derived_roots(t)
        if droots:
            for r in droots:
                self.taint(r, f"nn.init.{orig.__name__} on a view of it")
            return t
        return orig(*args, **kwargs)

    def dispatch(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)

        if isinstance(owner, types.GetSetDescriptorType):  # property access on a tensor
            attr = owner.__name__
            root = self.root_id(args[0]) if args else None
            if root is not None:
                if attr == "data" and name == "__get__":
                    out = func(*args, **kwargs)
                    self._add_alias(out, root)
                    return out
                if attr == "data" and name == "__set__":
                    target, value = args[0], args[1]
                    if (
                        isinstance(value, torch.Tensor)
                        and value.device.type != "meta"
                        and value.shape == target.shape
                        and value.dtype == target.dtype
                    ):
                        self.record(root, _assign_value, (target, value), {})
                        return None
                    self.taint(root, "its .data was replaced during construction")
                    return func(*args, **kwargs)
                if attr == "is_meta":
                    # Some initialisers return early on meta tensors (torch.nn.init functions
                    # imported by name, bypassing our wrappers): their effect is unknown.
                    self.taint(root, "construction code checked .is_meta on it")
            return func(*args, **kwargs)

        if name in _EMPTY_FACTORIES:
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.numel():
                self.empty_ptrs.add(out.data_ptr())
            return out

        if "out" in kwargs:  # torch.add(a, b, out=param) & co. write into their out=
            for t in _iter_tensors(kwargs["out"]):
                r = self.root_id(t)
                for rr in ([r] if r is not None else []) + list(self.derived_roots(t)):
                    self.taint(rr, f"written by {name}(out=...)")

        if _is_inplace(name):
            t = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
            root = self.root_id(t)
            if root is not None:
                if name in _METADATA_INPLACE_OK:
                    return func(*args, **kwargs)
                if name in _METADATA_INPLACE_TAINT:
                    self.taint(root, f"in-place {name} during construction")
                    return func(*args, **kwargs)
                self.record(root, func, args, kwargs)  # data-only op: skip it, remember it
                return None if name == "__setitem__" else t
            droots = self.derived_roots(t)
            if droots:
                for r in droots:
                    self.taint(r, f"in-place {name} on a view of it")
                return None if name == "__setitem__" else t
            if isinstance(t, (list, tuple)):  # _foreach_* style in-place ops
                hit = False
                for item in _iter_tensors(t):
                    r = self.root_id(item)
                    for rr in ([r] if r is not None else []) + list(self.derived_roots(item)):
                        self.taint(rr, f"in-place {name} on a list holding it")
                        hit = True
                if hit:
                    return func(*args, **kwargs)
            return func(*args, **kwargs)

        out = func(*args, **kwargs)
        if self.empty_ptrs and name not in _ALIAS_OPS:
            # A fresh allocation at an address torch.empty handed out earlier means that
            # empty tensor was freed: the address no longer marks uninitialised memory.
            for o in _iter_tensors(out):
                if o.device.type == "cpu" and o._base is None and o.numel():
                    self.empty_ptrs.discard(o.data_ptr())
        # Track tensors derived from meta params (views, detach) so that in-place writes
        # through them are not silently lost.
        roots: set[int] = set()
        for t in _iter_tensors(args):
            r = self.root_id(t)
            if r is not None:
                roots.add(r)
            roots |= self.derived_roots(t)
        for t in _iter_tensors(kwargs):
            r = self.root_id(t)
            if r is not None:
                roots.add(r)
            roots |= self.derived_roots(t)
        if roots:
            if name in _ALIAS_OPS and len(roots) == 1 and isinstance(out, torch.Tensor):
                self._add_alias(out, next(iter(roots)))
            else:
                for o in _iter_tensors(out):
                    if o.device.type == "meta" and id(o) not in self.roots:
                        self.derived.setdefault(id(o), set()).update(roots)
                        self.keep.append(o)
        return out

    def _add_alias(self, out: Any, root: int) -> None:
        if isinstance(out, torch.Tensor) and id(out) not in self.roots:
            self.alias[id(out)] = root
            self.keep.append(out)

    # -- replay ----------------------------------------------------------------------------
    def materialize(self, meta: nn.Parameter) -> torch.Tensor:
        """A real CPU tensor initialised by replaying what construction did to ``meta``."""
        root = id(meta)
        if root not in self.roots:
            raise _FastPathUnsupported("a meta parameter was not registered during construction")
        if root in self.tainted:
            raise _FastPathUnsupported(self.tainted[root])
        ops = self.ops[root]
        initial = self.initial.get(root)
        if initial is None:
            if not ops:
                raise _FastPathUnsupported("no initialisation was recorded for it")
            first = getattr(ops[0][0], "__name__", "")
            if first not in _FULL_OVERWRITE:
                raise _FastPathUnsupported(f"its first recorded init op {first!r} reads its data")
        real = torch.empty_strided(meta.shape, meta.stride(), dtype=meta.dtype, device="cpu")
        alias_ids = {i for i, r in self.alias.items() if r == root} | {root}

        def sub(obj: Any) -> Any:
            if isinstance(obj, torch.Tensor):
                if id(obj) in alias_ids:
                    if obj.shape != real.shape or obj.dtype != real.dtype:
                        raise _FastPathUnsupported("an alias of it changed shape or dtype")
                    return real
                if obj.device.type == "meta":
                    raise _FastPathUnsupported("a recorded init op reads another meta tensor")
                return obj
            if isinstance(obj, tuple):
                return tuple(sub(x) for x in obj)
            if isinstance(obj, list):
                return [sub(x) for x in obj]
            if isinstance(obj, dict):
                return {k: sub(v) for k, v in obj.items()}
            return obj

        with torch.no_grad():
            if initial is not None:
                _assign_value(real, initial)
            for func, args, kwargs in ops:
                func(*sub(args), **sub(kwargs))
        return real


_ACTIVE: _Recorder | None = None
_BUILD_LOCK = threading.RLock()
_PREV_REGISTER_PARAMETER: Callable[..., None] = _ORIG_REGISTER_PARAMETER


def _active_recorder() -> _Recorder | None:
    rec = _ACTIVE
    if rec is not None and rec.owner == threading.get_ident():
        return rec
    return None


def _patched_register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
    _PREV_REGISTER_PARAMETER(module, name, param)
    rec = _active_recorder()  # other threads building meanwhile are left alone
    if rec is None or param is None:
        return
    module._parameters[name] = rec.to_meta(module._parameters[name])


def _make_init_wrapper(inner: Callable[..., Any], orig: Callable[..., Any]) -> Callable[..., Any]:
    """``inner`` is what nn.init.<name> was before patching; ``orig`` is torch's own."""

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec = _active_recorder()
        t = args[0] if args else kwargs.get("tensor")
        if rec is None or (rec.root_id(t) is None and not rec.derived_roots(t)):
            return inner(*args, **kwargs)
        return rec.intercept_init(orig, args, kwargs)

    return wrapper


_ORIG_INIT_BY_ID = {id(f): f for f in _ORIG_NN_INIT.values()}


class _RecordingMode(TorchFunctionMode):
    def __init__(self, rec: _Recorder) -> None:
        super().__init__()
        self.rec = rec

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if id(func) in _ORIG_INIT_BY_ID:  # overridable nn.init fn bound by name elsewhere
            return self.rec.intercept_init(func, args, kwargs)
        return self.rec.dispatch(func, args, kwargs)


def _construct_on_meta(construct: Callable[[], nn.Module]) -> tuple[nn.Module, _Recorder]:
    """Run ``construct()`` with meta parameters, real buffers and recorded init ops.

    ``nn.Module.register_parameter`` and the public ``nn.init`` functions are patched
    process-wide for the duration (under a lock, restored in ``finally``); the patches act
    only in the building thread, other threads see the previous behaviour.
    """
    global _ACTIVE, _PREV_REGISTER_PARAMETER
    rec = _Recorder()
    with _BUILD_LOCK:
        if _ACTIVE is not None:
            raise _FastPathUnsupported("nested fast build")
        prev_register = nn.Module.register_parameter
        prev_init = {name: getattr(nn.init, name) for name in _NN_INIT_FUNCS}
        _ACTIVE = rec
        _PREV_REGISTER_PARAMETER = prev_register
        try:
            nn.Module.register_parameter = _patched_register_parameter  # type: ignore[method-assign]
            for name, inner in prev_init.items():
                setattr(nn.init, name, _make_init_wrapper(inner, _ORIG_NN_INIT[name]))
            with _RecordingMode(rec):
                model = construct()
        finally:
            nn.Module.register_parameter = prev_register  # type: ignore[method-assign]
            for name, inner in prev_init.items():
                setattr(nn.init, name, inner)
            _ACTIVE = None
    if not isinstance(model, nn.Module):
        raise TypeError(f"construct() returned {type(model).__name__}, not an nn.Module")
    return model, rec


# ----------------------------------------------------------------------------------------
# File handling and key checks (shared by both paths)
# ----------------------------------------------------------------------------------------


def _open_weights(path: str, shown: str) -> dict[str, torch.Tensor]:
    """Memory-map a safetensors file; tensors point into the mapping (zero-copy)."""
    import safetensors.torch

    if not os.path.isfile(path):
        raise WeightsError(
            f"weights file {shown!r} not found ({path}); download it again or fix the path."
        )
    try:
        return safetensors.torch.load_file(path, device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...
        raise WeightsError(
            f"weights file {shown!r} could not be read as safetensors ({exc}); it is corrupt "
            "or not a .safetensors file: delete it and download it again, or convert the "
            "checkpoint with zoo_core.convert_checkpoint."
        ) from exc


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _weights_dtype(sd: Mapping[str, torch.Tensor]) -> str:
    floating = {_dtype_name(t.dtype) for t in sd.values() if t.is_floating_point()}
    names = floating or {_dtype_name(t.dtype) for t in sd.values()}
    return "+".join(sorted(names)) if names else "none"


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(printable(k) for k in keys[:_MAX_LISTED])
    more = f", ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)}: {shown}{more}"


def _prefix_hint(missing: Iterable[str], unexpected: Iterable[str]) -> str:
    unexpected = list(unexpected)
    missing = set(missing)
    for prefix in ("module.", "model.", "_orig_mod.", "backbone.", "encoder."):
        if unexpected and all(k.startswith(prefix) for k in unexpected):
            stripped = {k[len(prefix) :] for k in unexpected}
            if not missing or stripped & missing:
                return (
                    f" Every unexpected key starts with {prefix!r} (a wrapper such as "
                    "DataParallel/DDP/torch.compile was saved): strip that prefix from the "
                    "keys and save the file again."
                )
    return ""




def _check_shapes(
    sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], shown: str
) -> None:
    bad = [
        f"{printable(k)} (file {tuple(v.shape)}, model {tuple(expected[k].shape)})"
        for k, v in sd.items()
        if k in expected and expected[k].shape != v.shape
    ]
    if bad:
        raise WeightsError(
            f"weights file {shown!r} does not fit the architecture: {len(bad)} tensor(s) outside "
            f"the classifier head have another shape: {', '.join(bad[:_MAX_LISTED])}"
            f"{' ...' if len(bad) > _MAX_LISTED else ''}. The file was saved from a different "
            "variant of this architecture (width, depth, patch or image size): pick the "
            "weights that belong to this model name, or build the matching variant."
        )


def _check_keys(
    missing: Iterable[str],
    unexpected: Iterable[str],
    dropped: Iterable[str],
    expected: Mapping[str, torch.Tensor],
    shown: str,
) -> None:
    allowed_missing = {k for k in dropped if k in expected}
    missing = set(missing) - allowed_missing
    unexpected = set(unexpected)
    if not missing and not unexpected:
        return
    parts = [f"weights file {shown!r} does not match the architecture's state_dict:"]
    if missing:
        parts.append(f"missing keys ({_listing(missing)});")
    if unexpected:
        parts.append(f"unexpected keys ({_listing(unexpected)}).")
    parts.append(
        "Nothing was loaded partially. Check that the file was saved from this architecture "
        "with model.state_dict() (keys exactly as the model names them)."
    )
    raise WeightsError(" ".join(parts) + _prefix_hint(missing, unexpected))


# ----------------------------------------------------------------------------------------
# The two paths
# ----------------------------------------------------------------------------------------


def _normal_path(
    construct: Callable[[], nn.Module], path: str, head: str, shown: str,
    adapt: Adapter | None = None,
) -> tuple[nn.Module, tuple[str, ...], str]:
    model = construct()
    sd = _open_weights(path, shown)
    dtype = _weights_dtype(sd)
    expected = model.state_dict()
    if adapt is not None:
        sd = adapt(sd, expected, model)
    sd, dropped, reinit = split_head(sd, expected, head)
    _check_shapes(sd, expected, shown)
    check_dtypes(sd, expected, shown)
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"weights file {shown!r} could not be loaded: {exc}") from exc
    _check_keys(result.missing_keys, result.unexpected_keys, reinit, expected, shown)
    return model, dropped, dtype


def _named_tensor_attrs(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """Plain tensor attributes of modules (not parameters/buffers): caches, constants."""
    for mname, m in model.named_modules(remove_duplicate=False):
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor):
                yield (f"{mname}.{k}" if mname else k), v


def _reinit_meta_buffers(model: nn.Module) -> None:
    for m in model.modules():
        has_meta = any(b is not None and b.is_meta for b in m._buffers.values()) or any(
            isinstance(v, torch.Tensor) and v.is_meta for v in vars(m).values()
        )
        if has_meta:
            init = getattr(m, "init_non_persistent_buffers", None)
            if callable(init):
                with torch.no_grad():
                    init()


def _set_param(model: nn.Module, name: str, value: nn.Parameter) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    owner._parameters[leaf] = value


def _fast_path(
    construct: Callable[[], nn.Module], path: str, head: str, shown: str,
    adapt: Adapter | None = None,
) -> tuple[nn.Module, tuple[str, ...], str]:
    model, rec = _construct_on_meta(construct)

    # Snapshot what the architecture set up, by name, before parameters get replaced.
    named = list(model.named_parameters(remove_duplicate=False))
    meta_of = {n: p for n, p in named}
    groups: dict[int, list[str]] = {}
    for n, p in named:
        groups.setdefault(id(p), []).append(n)
    expected = model.state_dict(keep_vars=True)  # meta params + real buffers, shapes/dtypes

    prefix = head + "."
    head_roots = {id(p) for n, p in named if n.startswith(prefix)}
    # Drop what is not needed any more: only head parameters may need a replay.
    for i in list(rec.initial):
        if i not in head_roots:
            del rec.initial[i]
    for i in list(rec.ops):
        if i not in head_roots:
            rec.ops[i] = []
    rec.empty_ptrs.clear()  # (rec.keep stays: alias ids must not be reused while replaying)

    sd = _open_weights(path, shown)
    dtype = _weights_dtype(sd)
    if adapt is not None:  # reads shapes only: meta parameters are fine
        sd = adapt(sd, expected, model)
    sd, dropped, reinit = split_head(sd, expected, head)
    _check_shapes(sd, expected, shown)
    check_dtypes(sd, expected, shown)
    for k, v in sd.items():
        target = expected.get(k)
        if target is not None and v.dtype != target.dtype:
            sd[k] = v.to(target.dtype)  # on purpose: an fp16 file still gives an fp32 model

    result = model.load_state_dict(sd, strict=False, assign=True)
    _check_keys(result.missing_keys, result.unexpected_keys, reinit, expected, shown)
    del sd

    # Re-tie parameters that were one object under several names (assign split them).
    for names in groups.values():
        if len(names) > 1:
            first = model.get_parameter(names[0])
            for n in names[1:]:
                _set_param(model, n, first)

    # Materialise still-meta parameters: only dropped head parameters may be left.
    done: dict[int, nn.Parameter] = {}
    for n, p in list(model.named_parameters(remove_duplicate=False)):
        if not p.is_meta:
            continue
        if not n.startswith(prefix):
            raise _FastPathUnsupported(f"parameter {n!r} was not in the file and is not head")
        meta = meta_of[n]
        if id(meta) not in done:
            try:
                real = rec.materialize(meta)
            except _FastPathUnsupported as exc:
                raise _FastPathUnsupported(f"head parameter {n!r}: {exc}") from None
            new = nn.Parameter(real, requires_grad=meta.requires_grad)
            new.__dict__.update(meta.__dict__)
            done[id(meta)] = new
        _set_param(model, n, done[id(meta)])

    # Non-persistent buffers computed from a parameter's device (timm swin's attn_mask uses
    # norm1.weight.device) were created on meta. timm modules expose
    # init_non_persistent_buffers() for exactly this; call it now that parameters are real.
    _reinit_meta_buffers(model)

    # Verify: nothing may be left on meta; parameters keep class, requires_grad and dtype.
    for n, p in model.named_parameters(remove_duplicate=False):
        meta = meta_of[n]
        if p.is_meta:
            raise _FastPathUnsupported(f"parameter {n!r} is still on meta")
        if type(p) is not nn.Parameter:
            raise _FastPathUnsupported(f"parameter {n!r} is a {type(p).__name__} after loading")
        if p.requires_grad != meta.requires_grad or p.dtype != meta.dtype:
            raise _FastPathUnsupported(f"parameter {n!r} changed requires_grad/dtype on load")
        if meta.__dict__ and not set(meta.__dict__) <= set(p.__dict__):
            p.__dict__.update(meta.__dict__)  # attributes the architecture put on the param
    for n, b in model.named_buffers(remove_duplicate=False):
        if b.is_meta:
            raise _FastPathUnsupported(f"buffer {n!r} is on meta")
    for n, t in _named_tensor_attrs(model):
        if t.is_meta:
            raise _FastPathUnsupported(f"tensor attribute {n!r} is on meta")
    return model, dropped, dtype


def build_and_load(
    construct: Callable[[], nn.Module],
    weights_path: str | os.PathLike,
    *,
    head: str,
    fast: bool = True,
    source_name: str | None = None,
    adapt: Adapter | None = None,
) -> tuple[nn.Module, LoadReport]:
    """Build ``construct()`` and load the safetensors file ``weights_path`` into it.

    ``construct`` builds the architecture at the target ``num_classes``; ``head`` is the
    dotted path of its classifier. File keys under ``head + "."`` whose shape differs from
    the model's (or that the model lacks) are not loaded and are reported in
    ``dropped_head_keys``; the head then keeps the architecture's own initialisation. Every
    other key must match exactly (no missing, no unexpected keys) or ``WeightsError`` is
    raised. ``adapt(state_dict, expected, model)`` may first fit file tensors to a model
    built with other arguments (``zoo_core._adapt_weights``). See the module docstring for
    the fast path.
    """
    start = time.perf_counter()
    path = os.fspath(weights_path)
    shown = source_name or path
    if not head:
        raise ValueError("head must be the dotted path of the classifier module")
    if _active_recorder() is not None:
        # Called from inside another fast build's construct(): its patches are active in
        # this thread, so neither path could build correctly here. The outer build catches
        # this and falls back to its normal path, where this call then works.
        raise RuntimeError("build_and_load() called from inside a fast build's construct()")
    reason: str | None = None
    if fast:
        try:
            model, dropped, dtype = _fast_path(construct, path, head, shown, adapt)
        except WeightsError:
            raise  # about the file: the normal path would fail the same way
        except Exception as exc:  # noqa: BLE001 - anything else: build it the normal way
            reason = f"{type(exc).__name__}: {exc}"
            logger.info("fast build fell back to the normal path for %s: %s", shown, reason)
        else:
            report = LoadReport(True, None, dropped, dtype, time.perf_counter() - start)
            return model, report
    else:
        reason = "fast=False"
    model, dropped, dtype = _normal_path(construct, path, head, shown, adapt)
    return model, LoadReport(False, reason, dropped, dtype, time.perf_counter() - start)
