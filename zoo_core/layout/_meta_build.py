"""Construction with parameters on the ``meta`` device, recording their init ops.

Step 1 of :mod:`zoo_core.build._fastload`'s fast path (see its docstring): ``construct()`` runs
with ``nn.Module.register_parameter`` patched so that every parameter moves to ``meta`` as
soon as it is registered, as an instance of :class:`_MetaParameter`, whose
``__torch_function__`` (plus thin wrappers around the public ``torch.nn.init`` functions)
skips the data-only initialisation ops on those parameters and records them, so that a new
head can be initialised the way the architecture initialises it. Aliases and tensors
derived from them become :class:`_Tracked` so that writes through them are seen too. Only
calls that touch these tensors enter Python (the ``TorchFunctionMode`` used before saw
every torch call: resnet50 built on meta in ~1.8x the time timm constructs it with no-op
inits, now ~1.4x); the factories of uninitialised memory are wrapped like ``nn.init``.
When construction ends they are plain ``nn.Parameter`` / ``torch.Tensor`` objects again.
Also the door to a meta-device build for plugins' stage layouts
(:mod:`zoo_core.layout._layout`).
"""

from __future__ import annotations

import functools
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo_core.layout._meta_ops import (
    _ALIAS_OPS,
    _EMPTY_FACTORIES,
    _EMPTY_SITES,
    _FULL_OVERWRITE,
    _METADATA_INPLACE_OK,
    _METADATA_INPLACE_TAINT,
    _NN_INIT_FUNCS,
    _NO_ROOTS,
    _PASSTHROUGH,
    _PASSTHROUGH_PROPS,
    _assign_value,
    _is_inplace,
    _iter_tensors,
)


class _FastPathUnsupported(Exception):
    """Internal: the fast path cannot build this model faithfully; use the normal path."""


_ORIG_NN_INIT = {name: getattr(nn.init, name) for name in _NN_INIT_FUNCS}
_ORIG_REGISTER_PARAMETER = nn.Module.register_parameter
_EMPTY_LIKE = torch.empty_like


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
        # ... whose tensors are kept until construction ends: no other tensor can be
        # allocated at those addresses meanwhile (their pages are mostly never touched).
        self.empties: list[torch.Tensor] = []
        self.converted: dict[int, tuple[weakref.ref, nn.Parameter]] = {}

    # -- lookups -------------------------------------------------------------------------
    def root_id(self, t: Any) -> int | None:
        if not isinstance(t, torch.Tensor):
            return None
        i = id(t)
        if i in self.roots:
            return i
        return self.alias.get(i)

    def derived_roots(self, t: Any) -> set[int] | frozenset[int]:
        if not self.derived or not isinstance(t, torch.Tensor):
            return _NO_ROOTS
        return self.derived.get(id(t), _NO_ROOTS)

    def taint(self, root: int, why: str) -> None:
        self.tainted.setdefault(root, why)

    def record(self, root: int, func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.ops[root].append((func, tuple(args), dict(kwargs)))

    # -- registration --------------------------------------------------------------------
    def to_meta(self, p: nn.Parameter) -> nn.Parameter:
        if p.is_meta:
            if id(p) not in self.roots:  # created on meta by the architecture itself
                self._meta_root(p)
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
        # what nn.Parameter(data, requires_grad) does for plain tensor data, minus a call
        meta = torch.Tensor._make_subclass(  # (torch's own empty_like: ours is wrapped now)
            _MetaParameter, _EMPTY_LIKE(p, device="meta"), p.requires_grad)
        if p.__dict__:
            meta.__dict__.update(p.__dict__)
        self._add_root(meta, initial)
        self.converted[id(p)] = (weakref.ref(p), meta)
        return meta

    def _meta_root(self, p: nn.Parameter) -> None:
        """A parameter the architecture created on meta becomes a root in place."""
        i = id(p)
        tp = type(p)
        if tp is nn.Parameter:
            p.__class__ = _MetaParameter
        elif tp is not _MetaParameter:
            self.taint(i, f"a {tp.__qualname__} created on meta (its ops cannot be followed)")
        self._add_root(p, None)

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
            return self.empty(func, args, kwargs)

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
        # Track tensors derived from meta params (views, detach) so that in-place writes
        # through them are not silently lost.
        found = _iter_tensors(args)
        if kwargs:
            found += _iter_tensors(kwargs)
        if not found:  # factories (zeros, ones, tensor of numbers): nothing to track
            return out
        roots: set[int] = set()
        own, alias, derived = self.roots, self.alias, self.derived
        for t in found:
            i = id(t)
            if i in own:
                roots.add(i)
            elif i in alias:
                roots.add(alias[i])
            if i in derived:
                roots |= derived[i]
        if roots:
            if name in _ALIAS_OPS and len(roots) == 1 and isinstance(out, torch.Tensor):
                self._add_alias(out, next(iter(roots)))
            else:
                for o in _iter_tensors(out):
                    if o.device.type == "meta" and id(o) not in self.roots:
                        self.derived.setdefault(id(o), set()).update(roots)
                        self._follow(o, roots)
        return out

    def empty(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """torch.empty & co.: remember where uninitialised memory was handed out."""
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_cpu and out.numel():
            self.empty_ptrs.add(out.data_ptr())
            self.empties.append(out)
        return out

    def _add_alias(self, out: Any, root: int) -> None:
        if isinstance(out, torch.Tensor) and id(out) not in self.roots:
            self.alias[id(out)] = root
            self._follow(out, (root,))

    def _follow(self, t: torch.Tensor, roots: Any) -> None:
        """Make the ops on ``t`` (an alias of or derived from ``roots``) reach dispatch."""
        self.keep.append(t)  # (also keeps it alive, so that its id stays unique)
        tp = type(t)
        if tp is torch.Tensor:
            t.__class__ = _Tracked
        elif tp is not _Tracked and tp is not _MetaParameter:
            for r in roots:
                self.taint(r, f"a {tp.__qualname__} derived from it cannot be followed")

    def restore_classes(self) -> None:
        """Construction is over: roots and followed tensors become plain objects again."""
        for p in self.roots.values():
            if type(p) is _MetaParameter:
                p.__class__ = nn.Parameter
        for t in self.keep:
            if type(t) is _Tracked:
                t.__class__ = torch.Tensor

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


_get_ident = threading.get_ident


def _active_recorder() -> _Recorder | None:
    rec = _ACTIVE  # (the wrappers below inline this: they run for every parameter)
    return rec if rec is not None and rec.owner == _get_ident() else None


def _patched_register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
    _PREV_REGISTER_PARAMETER(module, name, param)
    if param is None:
        return
    rec = _ACTIVE
    if rec is None or rec.owner != _get_ident():  # other threads meanwhile are left alone
        return
    p = module._parameters[name]
    if type(p) is nn.Parameter and not p.is_meta:  # the usual case: nothing to dispatch
        module._parameters[name] = rec.to_meta(p)
        return
    with torch._C.DisableTorchFunction():  # our own bookkeeping ops: not the model's
        module._parameters[name] = rec.to_meta(p)


def _make_init_wrapper(inner: Callable[..., Any], orig: Callable[..., Any]) -> Callable[..., Any]:
    """``inner`` is what nn.init.<name> was before patching; ``orig`` is torch's own."""

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec = _ACTIVE
        if rec is None or rec.owner != _get_ident():
            return inner(*args, **kwargs)
        t = args[0] if args else kwargs.get("tensor")
        i = id(t)
        root = i if i in rec.roots else rec.alias.get(i)  # (rec.root_id, inlined)
        if root is not None:  # what intercept_init does, without looking it up again
            rec.ops[root].append((orig, args, dict(kwargs)))  # (rec.record, inlined)
            return t
        if not rec.derived_roots(t):
            return inner(*args, **kwargs)
        return rec.intercept_init(orig, args, kwargs)

    return wrapper


def _make_empty_wrapper(inner: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.empty`` & co. in the building thread: remember the uninitialised memory."""

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        rec = _ACTIVE
        if rec is not None and rec.owner == _get_ident() and out.is_cpu and out.numel():
            rec.empty_ptrs.add(out.data_ptr())  # (what rec.empty does, inlined)
            rec.empties.append(out)
        return out

    return wrapper


_ORIG_INIT_BY_ID = {id(f): f for f in _ORIG_NN_INIT.values()}
_NO_SUBCLASS_TF = torch._C.DisableTorchFunctionSubclass


def _tracked_torch_function(cls, func, types, args=(), kwargs=None):  # noqa: ANN001
    """``__torch_function__`` of the roots and of what is derived from them."""
    fid = id(func)
    with _NO_SUBCLASS_TF():  # what runs here (the op itself, our bookkeeping) stays plain
        if fid in _PASSTHROUGH:
            return func(*args, **kwargs) if kwargs else func(*args)
        rec = _active_recorder()
        if rec is None:
            return func(*args, **kwargs) if kwargs else func(*args)
        if (id(getattr(func, "__self__", None)) in _PASSTHROUGH_PROPS
                and getattr(func, "__name__", "") == "__get__"):
            return func(*args)
        if fid in _ORIG_INIT_BY_ID:  # overridable nn.init fn bound by name elsewhere
            return rec.intercept_init(func, args, kwargs or {})
        return rec.dispatch(func, args, kwargs or {})


class _MetaParameter(nn.Parameter):
    """A meta parameter during construction (a root): its ops reach the recorder."""

    __torch_function__ = classmethod(_tracked_torch_function)  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> nn.Parameter:
        out = nn.Parameter.__deepcopy__(self, memo)  # (a copy is no root: a plain one)
        if type(out) is _MetaParameter:
            out.__class__ = nn.Parameter
        return out


class _Tracked(torch.Tensor):
    """A meta alias of a root or tensor derived from roots, during construction."""

    __torch_function__ = classmethod(_tracked_torch_function)  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> torch.Tensor:
        self.__class__ = torch.Tensor  # a copy is plain, as torch makes it for a plain one
        try:
            return self.__deepcopy__(memo)
        finally:
            self.__class__ = _Tracked


def _parameter_new(cls: type, data: Any = None, requires_grad: bool = True) -> Any:
    """``nn.Parameter(root or tracked)`` makes a plain Parameter of it, as it does for plain
    tensors (torch's own __new__ would keep a tensor subclass's type)."""
    if type(data) in _FOLLOWED and _active_recorder() is not None:
        return torch.Tensor._make_subclass(cls, data, requires_grad)
    return _ORIG_PARAMETER_NEW(cls, data, requires_grad)


_FOLLOWED = (_MetaParameter, _Tracked)
_ORIG_PARAMETER_NEW = nn.Parameter.__dict__["__new__"]
_WRAPPERS: dict[tuple[str, int], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _wrapper(name: str, inner: Callable[..., Any], make: Callable[..., Any], *extra: Any) -> Any:
    """``make(inner, *extra)``, made once per wrapped function, not once per build."""
    key = (name, id(inner))
    hit = _WRAPPERS.get(key)
    if hit is None or hit[0] is not inner:
        hit = _WRAPPERS[key] = (inner, make(inner, *extra))
    return hit[1]


def _construct_on_meta(construct: Callable[[], nn.Module]) -> tuple[nn.Module, _Recorder]:
    """Run ``construct()`` with meta parameters, real buffers and recorded init ops.

    ``nn.Module.register_parameter``, the public ``nn.init`` functions and the factories of
    uninitialised memory are patched process-wide for the duration (under a lock, restored
    in ``finally``); the patches act only in the building thread, other threads see the
    previous behaviour.
    """
    global _ACTIVE, _PREV_REGISTER_PARAMETER
    rec = _Recorder()
    with _BUILD_LOCK:
        if _ACTIVE is not None:
            raise _FastPathUnsupported("nested fast build")
        prev_register = nn.Module.register_parameter
        prev_new = nn.Parameter.__dict__["__new__"]
        prev_init = {name: getattr(nn.init, name) for name in _NN_INIT_FUNCS}
        prev_empty = [(owner, name, owner.__dict__.get(name, _MISSING))
                      for owner, name in _EMPTY_SITES]
        _ACTIVE = rec
        _PREV_REGISTER_PARAMETER = prev_register
        try:
            nn.Module.register_parameter = _patched_register_parameter  # type: ignore[method-assign]
            for name, inner in prev_init.items():
                wrapper = _wrapper(name, inner, _make_init_wrapper, _ORIG_NN_INIT[name])
                setattr(nn.init, name, wrapper)
            for owner, name, _ in prev_empty:
                setattr(owner, name, _wrapper(name, getattr(owner, name), _make_empty_wrapper))
            nn.Parameter.__new__ = _parameter_new  # type: ignore[method-assign]
            model = construct()
        finally:
            nn.Parameter.__new__ = prev_new  # type: ignore[method-assign]
            nn.Module.register_parameter = prev_register  # type: ignore[method-assign]
            for name, inner in prev_init.items():
                setattr(nn.init, name, inner)
            for owner, name, inner in prev_empty:
                if inner is _MISSING:
                    delattr(owner, name)  # (inherited, as before)
                else:
                    setattr(owner, name, inner)
            _ACTIVE = None
            rec.restore_classes()
            rec.empties.clear()  # (their memory is released now)
    if not isinstance(model, nn.Module):
        raise TypeError(f"construct() returned {type(model).__name__}, not an nn.Module")
    return model, rec


_MISSING = object()
