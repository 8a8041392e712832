"""Fast, zero-copy "construct + load pretrained weights" for the model builder.

``build_and_load(construct, weights_path, head=...)`` returns the model built by
``construct()`` (architecture at the TARGET ``num_classes``) with the safetensors file
loaded into it, and a :class:`LoadReport`.

Fast path (``fast=True``, the default)

1. ``construct()`` runs with ``nn.Module.register_parameter`` patched so that every
   parameter is moved to the ``meta`` device as soon as it is registered (buffers stay
   real, so non-persistent buffers such as swin's ``relative_position_index`` are computed
   as usual), while the meta parameters' ``__torch_function__`` (they are a tensor subclass
   while construction runs, plain ``nn.Parameter`` after; plus thin wrappers around the
   public ``torch.nn.init`` functions) skips the data-only initialisation ops on them and
   RECORDS them per parameter (``.data``/``.detach()`` aliases and views are followed).
2. The file is read with every tensor in its own storage, 64-byte aligned
   (:mod:`zoo_core.build._aligned_read`: one allocation per tensor and a few ``preadv``
   calls, on a background thread while step 1 runs), where torch's allocator puts it:
   the model then computes bit for bit what timm's and torchvision's copying
   loaders compute (a tensor mapped at 16 or 48 mod 64 made oneDNN/MKL take other kernel
   paths). A file that reader does not handle is memory-mapped by
   ``safetensors.torch.load_file`` and its misaligned tensors copied.
   The tensors are assigned as ``load_state_dict(strict=False, assign=True)`` would (by
   hand where that is all it would do: no load hooks, no custom ``_load_from_state_dict``),
   after an on-purpose cast wherever the file's dtype differs from the model's.
3. The same strict key checks as the normal path are applied; head parameters whose shape
   differs from the file's (new ``num_classes``) are materialised on CPU and the recorded
   init ops are replayed on them, so the new head is initialised the way the architecture
   initialises it.
4. Anything left on ``meta`` (parameter, buffer, tensor attribute) or any head parameter
   whose init cannot be replayed makes the build fall back to the normal path; a model
   that would read uninitialised memory is never returned.

Normal path: ``construct()``, load the file, drop mismatching head keys,
``load_state_dict(strict=False)`` (copies), then the same strict key checks.

Parameters returned by the fast path share one CPU buffer (read from the file, never
mapped) unless the file had to be mapped (above): then aligned tensors stay backed by the
mapped file (a private, copy-on-write mapping: training never writes to the file), and
whoever manages the weight cache must replace cache files only by writing a new file and
renaming it over the old one, never by truncating or rewriting a file in place (a mapped
page could change or raise SIGBUS).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from zoo_core.build._aligned_read import ALIGN, Prefetch
from zoo_core.build._fast_assign import _assign, _expected_state, _has_meta, _plain_loading
from zoo_core.errors import WeightsError
from zoo_core.layout._meta_build import _active_recorder, _construct_on_meta, _FastPathUnsupported
from zoo_core.weights._adapt_weights import Adapter
from zoo_core.weights._load_checks import check_dtypes, split_head
from zoo_core.weights._safetensors_header import printable

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


def _open_aligned(prefetch: Prefetch, path: str, shown: str) -> dict[str, torch.Tensor]:
    """The file's tensors, each 64-byte aligned (see ``_aligned_read``): read into one
    buffer, or mapped where the file cannot be read that way, misaligned ones then copied."""
    sd = prefetch.result()
    if sd is not None:
        return sd
    sd = _open_weights(path, shown)
    for k, v in sd.items():
        if v.data_ptr() % ALIGN:
            sd[k] = v.clone()  # the copy lands where torch's allocator puts it: aligned
    return sd


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


def _dotted(owner: str, leaf: str) -> str:
    return f"{owner}.{leaf}" if owner else leaf


def _set_param(model: nn.Module, name: str, value: nn.Parameter) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    owner._parameters[leaf] = value


def _fast_path(
    construct: Callable[[], nn.Module], path: str, head: str, shown: str,
    adapt: Adapter | None = None,
) -> tuple[nn.Module, tuple[str, ...], str]:
    prefetch = Prefetch(path)  # the file is read while the architecture is constructed
    try:
        model, rec = _construct_on_meta(construct)
    except BaseException:
        prefetch.result()  # no reader left behind
        raise

    # Snapshot what the architecture set up, by name, before parameters get replaced. One
    # walk of the module tree serves everything below (loading by assignment replaces
    # parameters, never modules); named_parameters(remove_duplicate=False) is read off it.
    mods = list(model.named_modules(remove_duplicate=False))
    named = [(_dotted(mname, leaf), p) for mname, m in mods
             for leaf, p in m._parameters.items() if p is not None]
    meta_of = {n: p for n, p in named}
    groups: dict[int, list[str]] = {}
    for n, p in named:
        groups.setdefault(id(p), []).append(n)
    expected = _expected_state(model, mods)  # meta params + real buffers, shapes/dtypes

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

    sd = _open_aligned(prefetch, path, shown)
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

    if _plain_loading(model, (m for _, m in mods)):
        missing, unexpected = _assign(model, sd, mods)
    else:
        result = model.load_state_dict(sd, strict=False, assign=True)
        missing, unexpected = result.missing_keys, result.unexpected_keys
        mods = list(model.named_modules(remove_duplicate=False))  # (its hooks may do more)
    _check_keys(missing, unexpected, reinit, expected, shown)
    del sd

    # Re-tie parameters that were one object under several names (assign split them).
    for names in groups.values():
        if len(names) > 1:
            first = model.get_parameter(names[0])
            for n in names[1:]:
                _set_param(model, n, first)

    # Materialise still-meta parameters: only dropped head parameters may be left.
    done: dict[int, nn.Parameter] = {}
    for mname, m in mods:
        for leaf, p in m._parameters.items():
            if p is None or not p.is_meta:
                continue
            n = _dotted(mname, leaf)
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
            m._parameters[leaf] = done[id(meta)]

    # Non-persistent buffers computed from a parameter's device (timm swin's attn_mask uses
    # norm1.weight.device) were created on meta. timm modules expose
    # init_non_persistent_buffers() for exactly this; call it now that parameters are real.
    with_meta = [(mname, m) for mname, m in mods if _has_meta(m)]
    for _, m in with_meta:
        init = getattr(m, "init_non_persistent_buffers", None)
        if callable(init):
            with torch.no_grad():
                init()

    # Verify: nothing may be left on meta; parameters keep class, requires_grad and dtype.
    for mname, m in mods:
        for leaf, p in m._parameters.items():
            if p is None:
                continue
            n = _dotted(mname, leaf)
            meta = meta_of[n]
            if p.is_meta:
                raise _FastPathUnsupported(f"parameter {n!r} is still on meta")
            if type(p) is not nn.Parameter:
                raise _FastPathUnsupported(
                    f"parameter {n!r} is a {type(p).__name__} after loading")
            if p.requires_grad != meta.requires_grad or p.dtype != meta.dtype:
                raise _FastPathUnsupported(
                    f"parameter {n!r} changed requires_grad/dtype on load")
            if meta.__dict__ and not set(meta.__dict__) <= set(p.__dict__):
                p.__dict__.update(meta.__dict__)  # attributes the architecture put on it
    for mname, m in with_meta:  # only these had meta buffers or tensor attributes
        for k, b in m._buffers.items():
            if b is not None and b.is_meta:
                raise _FastPathUnsupported(f"buffer {_dotted(mname, k)!r} is on meta")
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor) and v.is_meta:
                raise _FastPathUnsupported(
                    f"tensor attribute {_dotted(mname, k)!r} is on meta")
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
    built with other arguments (``zoo_core.weights._adapt_weights``). See the module docstring for
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
