"""Model arguments a builder swallows: accepted through ``**kwargs`` and ignored.

torchvision's builders take ``**kwargs`` and drop what their model class does not name
(``mobilenet_v3_small(drop_rate=0.1)`` builds the same model as without it). Such an
argument must not be recorded in ``model.zoo.model_args`` as applied. An argument the
builder's signature names is trusted; one that reaches it only through ``**kwargs`` is
tested: the model is built on the meta device with and without it and the two are
compared (module types, their ``extra_repr``, plain attributes such as ``drop_rate``,
parameter shapes). Same model: for a well-known argument (``drop_rate``...) a second,
different value tells "the default value" from "ignored"; ignored is an
:class:`~zoo_core.InvalidArgumentError`. An argument zoo_core does not know that changes
nothing visible (it may only change the initialisation) is kept, with a warning.
Verdicts are cached per model, builder arguments and value, so only the first build of a
process pays for the extra meta builds.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from zoo_core._specs import BackboneSpec
from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["check_swallowed", "ignored_known_args"]

# a second value for each well-known argument, to tell "default value" from "ignored"
_PROBES: dict[str, tuple[Any, Any]] = {
    "drop_rate": (0.5, 0.25),
    "drop_path_rate": (0.5, 0.25),
    "global_pool": ("max", "avg"),
    "in_chans": (1, 2),
    "img_size": (64, 96),
}
_SIMPLE = (bool, int, float, str, type(None))
_verdicts: dict[tuple[str, ...], str] = {}
_lock = threading.Lock()


def _meta(builder: Callable[..., Any], num_classes: int,
          kwargs: Mapping[str, Any]) -> nn.Module:
    """The model the builder builds, parameters on the meta device."""
    from zoo_core.layout._layout import build_on_meta

    return build_on_meta(lambda: builder(num_classes=num_classes, **kwargs))


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    rows: list[Any] = []
    for name, module in model.named_modules():
        attrs = sorted(
            (k, repr(v)) for k, v in vars(module).items()
            if not k.startswith("_") and k != "training" and (
                isinstance(v, _SIMPLE) or isinstance(v, tuple)
                and all(isinstance(x, _SIMPLE) for x in v)))
        rows.append((name, type(module).__qualname__, module.extra_repr(), tuple(attrs)))
    rows += [(n, tuple(t.shape)) for n, t in model.named_parameters()]
    rows += [(n, tuple(t.shape)) for n, t in model.named_buffers()]
    return tuple(rows)


def _through_var_kwargs(builder: Callable[..., Any], keys: list[str]) -> list[str]:
    """The keys that reach the builder only through ``**kwargs``."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return keys
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []  # a name it does not take raises TypeError: said by build_model already
    named = {n for n, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           inspect.Parameter.KEYWORD_ONLY)}
    return [k for k in keys if k not in named]


def _verdict(spec: BackboneSpec, builder: Callable[..., Any], num_classes: int,
             kwargs: Mapping[str, Any], key: str) -> str:
    """"applied", "ignored" or "invisible" (unknown argument, no visible change)."""
    def build(args: Mapping[str, Any]) -> tuple[Any, ...]:
        return _fingerprint(_meta(builder, num_classes, args))

    without = {k: v for k, v in kwargs.items() if k != key}
    base = build(without)
    if build(kwargs) != base:
        return "applied"
    probes = [p for p in _PROBES.get(key, ()) if p != kwargs[key]][:1]
    if not probes:
        return "invisible"
    return "applied" if build({**without, key: probes[0]}) != base else "ignored"


def check_swallowed(spec: BackboneSpec, builder: Callable[..., Any], num_classes: int,
                    model_args: Mapping[str, Any]) -> None:
    """Raise for a well-known model argument the builder ignores; warn for an unknown one
    that changes nothing visible."""
    keys = _through_var_kwargs(builder, sorted(model_args))
    kwargs = {**spec.builder_kwargs, **model_args}
    ignored, invisible = [], []
    for key in keys:
        cache_key = (spec.qualified_name, repr(spec.builder), repr(sorted(kwargs.items())), key)
        with _lock:
            verdict = _verdicts.get(cache_key)
        if verdict is None:
            try:
                verdict = _verdict(spec, builder, num_classes, kwargs, key)
            except Exception:  # noqa: BLE001 - the real build says what is wrong
                verdict = "applied"
            with _lock:
                _verdicts[cache_key] = verdict
        if verdict == "ignored":
            ignored.append(key)
        elif verdict == "invisible":
            invisible.append(key)
    dist = f"{spec.distribution} {spec.distribution_version}".strip() or "no distribution"
    where = f"model {spec.name!r} of plugin {spec.plugin!r} ({dist})"
    if ignored:
        shown = ", ".join(f"{k}={model_args[k]!r}" for k in ignored)
        raise InvalidArgumentError(
            f"{where} ignores model argument(s) {shown}: its builder takes **kwargs and "
            "builds the same model with any value, so the argument would have no effect. "
            "Remove it: pass the option under the name the model class takes (torchvision "
            "calls dropout dropout=, as in mobilenet_v3_small(dropout=0.1); see the class's "
            "signature), or use the timm model of the same architecture, which takes "
            "drop_rate, drop_path_rate, in_chans, img_size and global_pool")
    if invisible:
        warnings.warn(
            f"{where}: model argument(s) {', '.join(invisible)} reach its builder through "
            "**kwargs and change no module, attribute or shape of the built model; if the "
            "builder ignores them they have no effect (they are recorded in "
            "model.zoo.model_args as given)", UserWarning, stacklevel=4)


def ignored_known_args(spec: BackboneSpec, builder: Callable[..., Any],
                       num_classes: int) -> list[str]:
    """The well-known model arguments this builder would ignore (for ``check_plugin``)."""
    keys = [k for k in _through_var_kwargs(builder, sorted(_PROBES))
            if k not in spec.builder_kwargs]
    if not keys:
        return []
    try:
        base = _fingerprint(_meta(builder, num_classes, spec.builder_kwargs))
    except Exception:  # noqa: BLE001 - the builder's own fault, reported by check_spec
        return []
    out = []
    for key in keys:
        for value in _PROBES[key]:
            try:
                changed = _fingerprint(_meta(builder, num_classes,
                                             {**spec.builder_kwargs, key: value})) != base
            except Exception:  # noqa: BLE001 - a builder that rejects the value reads it
                changed = True
            if changed:
                break
        else:
            out.append(key)
    return out
