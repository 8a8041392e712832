"""Model keyword arguments (``build_model(..., in_chans=1)``): checked, recorded, reloaded.

``build_model`` passes extra keyword arguments to the plugin's builder, the way
``timm.create_model`` does. They are recorded in ``model.zoo.model_args`` and in a saved
``config.json`` as ``model_args`` (timm's key, so plain timm rebuilds the same model).

* :func:`check_caller_args`: arguments from a caller. The well-known ones (see
  :data:`KNOWN`) are checked for type and bounds; any other name goes to the builder,
  which may reject it (then :class:`~zoo_core.InvalidArgumentError` names the model, the
  plugin and the argument). Values must be JSON values so that they can be saved.
* :func:`args_from_config`: ``model_args`` of a ``config.json``, untrusted: only the
  well-known names are accepted, each checked; every bad key is reported. ``num_classes``
  (timm records it there too) is skipped: the config's own ``num_classes`` rules.
* :func:`adapt_data_config`: what the model expects as input once ``in_chans`` or
  ``img_size`` changed it.

>>> check_caller_args({"in_chans": 1, "drop_rate": 0.1}, "zoonet_s")
{'drop_rate': 0.1, 'in_chans': 1}
>>> check_caller_args({"in_chans": 0}, "zoonet_s")
Traceback (most recent call last):
...
zoo_core.errors.InvalidArgumentError: model argument in_chans=0 for 'zoonet_s' must be ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from zoo_core._specs import DataConfig
from zoo_core.errors import HubError, InvalidArgumentError

__all__ = ["KNOWN", "RESERVED", "adapt_data_config", "args_from_config", "check_caller_args"]

MAX_CHANNELS = 64
MAX_SIDE = 8192
_MAX_STR = 64
_MAX_KEYS = 32
_MAX_LIST = 8

# Arguments that select or load things: zoo_core's own parameters own them.
RESERVED: dict[str, str] = {
    "num_classes": "pass num_classes= to build_model",
    "model_name": "pass the model name as build_model's first argument",
    "pretrained": "pass weights= (a tag, path, URL or hf-hub: repo; None for none)",
    "weights": "weights= is build_model's own parameter",
    "pretrained_cfg": "zoo_core reads the data config from the weights' spec",
    "pretrained_cfg_overlay": "pass weights=<file> to load another file",
    "checkpoint_path": "pass weights=<path to a .safetensors file>",
    "cache_dir": "set ZOO_CORE_CACHE (or HF_HOME for hf-hub: weights)",
    "features_only": "zoo_core builds classifiers; use timm directly for feature maps",
    "scriptable": ("timm's TorchScript switch is not a model option zoo_core records; build "
                   "the model, then torch.jit.script(model), or call "
                   "timm.create_model(name, scriptable=True) directly"),
    "exportable": ("timm's export switch is not a model option zoo_core records; for a "
                   "saved model or run use `zoo export MODEL --format onnx|torchscript|"
                   "exported-program --out FILE` (parity-checked), or build the model, then "
                   "torch.export.export(model, (example_input,)), or call "
                   "timm.create_model(name, exportable=True) directly"),
    "no_jit": ("timm's no-JIT switch is not a model option zoo_core records; call "
               "timm.create_model(name, no_jit=True) directly, or wrap the build in "
               "timm.layers.set_layer_config(no_jit=True)"),
    "pretrained_strict": "zoo_core always checks keys strictly",
}


def _int_in(low: int, high: int, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be an integer from {low} to {high} ({what})"
        return None
    return check


def _rate(value: Any) -> str | None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not 0.0 <= value < 1.0):
        return "must be a number from 0 (included) to 1 (excluded): a dropout probability"
    return None


def _img_size(value: Any) -> str | None:
    side = _int_in(16, MAX_SIDE, "pixels")
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or any(side(v) for v in value):
            return f"must be an integer or [height, width], each from 16 to {MAX_SIDE}"
        return None
    return None if side(value) is None else f"must be an integer from 16 to {MAX_SIDE} " \
        "or [height, width]"


def _pool(value: Any) -> str | None:
    if value == "":
        # timm reads '' as "no pooling": the head would get a feature map, not a vector, and
        # the model fails on its first forward (issue 11)
        return ("'' means no pooling, which leaves the classifier a feature map: use a "
                "pooling name such as 'avg', 'max', 'avgmax' or 'token'")
    if not isinstance(value, str) or len(value) > 16 or not value.isidentifier():
        return "must be a pooling name such as 'avg', 'max', 'avgmax' or 'token'"
    return None


KNOWN: dict[str, Callable[[Any], str | None]] = {
    "in_chans": _int_in(1, MAX_CHANNELS, "input channels: 1 for grayscale, 3 for RGB"),
    "drop_rate": _rate,
    "drop_path_rate": _rate,
    "img_size": _img_size,
    "global_pool": _pool,
}


def _json_value(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return not isinstance(value, str) or len(value) <= _MAX_STR
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)) and depth == 0:
        return len(value) <= _MAX_LIST and all(_json_value(v, 1) for v in value)
    return False


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_caller_args(args: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The caller's model arguments, checked; sorted by name (how config.json keeps them)."""
    out: dict[str, Any] = {}
    for key in sorted(args):
        value = args[key]
        if key in RESERVED:
            raise InvalidArgumentError(
                f"{key}= is not a model argument of build_model({model!r}): {RESERVED[key]}")
        if key.startswith("_"):
            raise InvalidArgumentError(
                f"model argument {key!r} for {model!r} starts with '_': private builder "
                "options are not passed; remove it")
        check = KNOWN.get(key)
        problem = check(value) if check is not None else None
        if problem:
            raise InvalidArgumentError(f"model argument {key}={value!r} for {model!r} {problem}")
        if not _json_value(value):
            raise InvalidArgumentError(
                f"model argument {key}={value!r} for {model!r} is not a plain JSON value "
                "(number, string, bool, None, or a short list of those): zoo_core records "
                "model arguments in config.json so the model can be rebuilt; pass a plain "
                "value")
        out[key] = _plain(value)
    return out


def args_from_config(args: Any, name: str) -> dict[str, Any]:
    """``model_args`` of ``config.json`` of ``name``: only known names, each checked."""
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise HubError(f"config.json of {name}: model_args must be an object such as "
                       f'{{"in_chans": 1}}, got {type(args).__name__}; fix config.json')
    if len(args) > _MAX_KEYS:
        raise HubError(f"config.json of {name}: model_args has {len(args)} keys (at most "
                       f"{_MAX_KEYS}); fix config.json")
    problems: list[str] = []
    out: dict[str, Any] = {}
    known = ", ".join(sorted(KNOWN))
    for key, value in args.items():
        shown = repr(key)[:80]
        if key == "num_classes":
            continue  # timm records it too; config.json's own num_classes rules (checked)
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            problems.append(f"{shown} is not a model argument name")
        elif key in RESERVED:
            problems.append(f"{shown} is not allowed ({RESERVED[key]})")
        elif key not in KNOWN:
            problems.append(f"{shown} is not an argument zoo_core loads from a config "
                            f"(known: {known})")
        elif (problem := KNOWN[key](value)) is not None:
            problems.append(f"{shown}={repr(value)[:80]} {problem}")
        else:
            out[key] = _plain(value)
    if problems:
        raise HubError(f"config.json of {name} has invalid model_args: "
                       + "; ".join(problems) + ". Fix or remove them in config.json")
    return dict(sorted(out.items()))


def adapt_data_config(dc: DataConfig, args: Mapping[str, Any]) -> DataConfig:
    """The input a model built with ``args`` expects (channels and size).

    >>> adapt_data_config(DataConfig(input_size=(3, 32, 32), mean=(0.4, 0.5, 0.6),
    ...     std=(0.2, 0.2, 0.2)), {"in_chans": 1}).mean
    (0.5,)
    """
    chans = args.get("in_chans")
    size = args.get("img_size")
    if chans is None and size is None:
        return dc
    _, height, width = dc.input_size
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else (size[0], size[1])
    mean, std = dc.mean, dc.std
    if chans is not None and chans != len(mean):
        mean, std = _channels(mean, chans), _channels(std, chans)
    return DataConfig(input_size=(chans or dc.input_size[0], height, width), mean=mean,
                      std=std, interpolation=dc.interpolation, crop_pct=dc.crop_pct,
                      first_conv=dc.first_conv)


def _channels(values: tuple[float, ...], chans: int) -> tuple[float, ...]:
    """One value for grayscale (the average), the pattern repeated for more channels
    (how ``timm.models.adapt_input_conv`` repeats the RGB filters)."""
    if chans == 1:
        return (round(sum(values) / len(values), 6),)
    return tuple(values[i % len(values)] for i in range(chans))
