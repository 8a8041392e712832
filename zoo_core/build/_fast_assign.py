"""Reading a built model's state off one walk of its modules, for the fast path.

What :mod:`zoo_core.build._fastload` does after construction, where torch's generic
``state_dict()`` / ``load_state_dict(assign=True)`` would only read or assign, module by
module: the same result without walking the module tree again per step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

# Types of a module's own attributes that are never tensors (its hook dicts, sizes,
# flags): skipped without an isinstance check.
_NOT_TENSOR = frozenset({dict, OrderedDict, set, list, tuple, int, float, bool, str,
                         type(None)})


def _has_meta(m: nn.Module) -> bool:
    """A meta buffer or plain tensor attribute (a cache, a constant) on module ``m``."""
    for b in m._buffers.values():
        if b is not None and b.is_meta:
            return True
    tensor, skip = torch.Tensor, _NOT_TENSOR
    for v in m.__dict__.values():  # (a plain loop: twice as fast as any() on a generator)
        if type(v) not in skip and isinstance(v, tensor) and v.is_meta:
            return True
    return False


def _expected_state(model: nn.Module, mods: list[tuple[str, nn.Module]]) -> dict:
    """``model.state_dict(keep_vars=True)``, read off the module walk ``mods`` where that
    is all it would do (no state_dict hooks, no overridden saving, no extra state)."""
    out = {}
    for mname, m in mods:
        if m._state_dict_pre_hooks or m._state_dict_hooks or not _plain_state(type(m)):
            return model.state_dict(keep_vars=True)
        prefix = mname + "." if mname else ""
        for name, p in m._parameters.items():
            if p is not None:
                out[prefix + name] = p
        for name, b in m._buffers.items():
            if b is not None and name not in m._non_persistent_buffers_set:
                out[prefix + name] = b
    return out


_PLAIN_STATE: dict[type, bool] = {}  # (classes are not changed after definition)


def _plain_state(cls: type) -> bool:
    ok = _PLAIN_STATE.get(cls)
    if ok is None:
        ok = _PLAIN_STATE[cls] = (
            cls.state_dict is nn.Module.state_dict
            and cls._save_to_state_dict is nn.Module._save_to_state_dict
            and getattr(cls, "get_extra_state", nn.Module.get_extra_state)
            is nn.Module.get_extra_state)
    return ok


def _plain_loading(model: nn.Module, modules: Iterable[nn.Module] | None = None) -> bool:
    """Whether ``load_state_dict(assign=True)`` would only assign, module by module
    (``modules``: ``model.modules()`` when the caller has walked them already)."""
    import torch.nn.modules.module as mm
    from torch.nn.modules.batchnorm import _NormBase

    if type(model).load_state_dict is not nn.Module.load_state_dict:
        return False
    if mm._global_parameter_registration_hooks or mm._global_buffer_registration_hooks:
        return False
    if torch.__future__.get_swap_module_params_on_conversion():
        return False
    plain = (nn.Module._load_from_state_dict, _NormBase._load_from_state_dict)
    for m in model.modules() if modules is None else modules:
        if m._load_state_dict_pre_hooks or m._load_state_dict_post_hooks:
            return False
        cls = type(m)
        ok = _PLAIN_CLASS.get(cls)
        if ok is None:
            ok = _PLAIN_CLASS[cls] = (cls._load_from_state_dict in plain
                                      and cls.set_extra_state is nn.Module.set_extra_state)
        if not ok:
            return False
    return True


_PLAIN_CLASS: dict[type, bool] = {}  # (classes are not changed after definition)


def _assign(
    model: nn.Module, sd: dict[str, torch.Tensor],
    mods: Iterable[tuple[str, nn.Module]] | None = None,
) -> tuple[list[str], list[str]]:
    """``load_state_dict(sd, strict=False, assign=True)`` for a model where that only assigns
    (:func:`_plain_loading`): (missing, unexpected) keys. Shapes were checked before.
    ``mods``: ``model.named_modules(remove_duplicate=False)``, when walked already."""
    missing, seen = [], set()
    norm_base = _norm_base()
    if mods is None:
        mods = model.named_modules(remove_duplicate=False)
    for mname, m in mods:
        prefix = mname + "." if mname else ""
        for name, p in m._parameters.items():
            if p is None:
                continue
            v = sd.get(prefix + name)
            if v is None:
                missing.append(prefix + name)
                continue
            seen.add(prefix + name)
            m._parameters[name] = nn.Parameter(v, requires_grad=p.requires_grad)
        for name, b in m._buffers.items():
            if b is None or name in m._non_persistent_buffers_set:
                continue
            v = sd.get(prefix + name)
            if v is None:
                # _NormBase fills a num_batches_tracked missing from a file without version
                if not (name == "num_batches_tracked" and isinstance(m, norm_base)):
                    missing.append(prefix + name)
                continue
            seen.add(prefix + name)
            m._buffers[name] = v
    return missing, [k for k in sd if k not in seen]


def _norm_base() -> type:
    from torch.nn.modules.batchnorm import _NormBase

    return _NormBase
