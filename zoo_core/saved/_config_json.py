"""A Hub repo's ``config.json`` is untrusted input: read it within bounds, check what it says.

* :func:`read_config` caps the size (:data:`MAX_BYTES`) and the nesting depth
  (:data:`MAX_DEPTH`) *before* parsing: 100,000 nested ``[`` would otherwise raise
  ``RecursionError`` from inside the json module.
* :func:`check_config` bounds ``num_classes`` (top level and ``pretrained_cfg``) by
  ``[limits] max_num_classes`` of registry.toml, so a repo cannot make torch allocate a
  10**12-row head, and validates ``pretrained_cfg``: finite ``mean``, ``std`` > 0, one value
  per input channel, ``input_size`` positive and bounded, ``interpolation`` one of timm's
  resize modes, ``crop_pct`` in (0, 2]: a bad value is refused when the config is read,
  not when an image is first resized.
* :func:`install_hint` prints a ``pip install`` command only for distributions that the
  project's registry.toml lists (``[plugins] known_distributions``); any other name came
  from the repo author and is shown as unverified, never as a command to paste.

>>> check_depth('{"a": [[1]]}', limit=3)
>>> check_depth("[" * 5 + "]" * 5, limit=3)
Traceback (most recent call last):
...
ValueError: nested deeper than 3 levels
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo_core.errors import HubError

__all__ = ["INTERPOLATIONS", "MAX_BYTES", "MAX_DEPTH", "check_config", "check_depth",
           "install_hint", "read_config"]

MAX_BYTES = 10_000_000
MAX_DEPTH = 32
MAX_CHANNELS = 64
MAX_SIDE = 8192
# timm's resize modes (timm.data.transforms.str_to_interp_mode)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "box", "hamming", "lanczos")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def check_depth(text: str, *, limit: int = MAX_DEPTH) -> None:
    """Raise ``ValueError`` when JSON ``text`` nests arrays/objects deeper than ``limit``."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                raise ValueError(f"nested deeper than {limit} levels")
        else:
            depth -= 1


def read_config(path: Path, name: str) -> dict[str, Any]:
    """``config.json`` of ``name`` as a dict, or a :class:`HubError` saying what is wrong."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{size} bytes, larger than the {MAX_BYTES}-byte limit")
        text = path.read_bytes().decode("utf-8")
        check_depth(text)
        config = json.loads(text)
    except (OSError, ValueError, RecursionError) as exc:
        raise HubError(f"config.json of {name} cannot be read as JSON: {exc}. It is not a "
                       "config written by zoo_core or timm; check the repo") from None
    if not isinstance(config, dict):
        raise HubError(f"config.json of {name} is not a JSON object")
    return config


def _bad(name: str, key: str, problem: str) -> HubError:
    return HubError(f"config.json of {name}: {key} {problem}; the repo's config is invalid "
                    "(push it again with zoo_core.push_to_hub, or fix config.json)")


def check_config(config: Mapping[str, Any], name: str, *, max_num_classes: int) -> None:
    """Bounds and sanity of what zoo_core reads from a repo's config.json."""
    pcfg = config.get("pretrained_cfg")
    for key, value in (("num_classes", config.get("num_classes")),
                       ("pretrained_cfg.num_classes",
                        pcfg.get("num_classes") if isinstance(pcfg, Mapping) else None)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, key, f"must be an integer, got {value!r}")
        if not 1 <= value <= max_num_classes:
            raise _bad(name, key, f"is {value}, outside 1 .. {max_num_classes} "
                       "([limits] max_num_classes in registry.toml)")
    if pcfg is None:
        return
    if not isinstance(pcfg, Mapping):
        raise _bad(name, "pretrained_cfg", "is not an object")
    channels = None
    size = pcfg.get("input_size")
    if size is not None:
        if not _ints(size, 3) or not (1 <= size[0] <= MAX_CHANNELS) or not all(
                1 <= s <= MAX_SIDE for s in size[1:]):
            raise _bad(name, "pretrained_cfg.input_size",
                       f"must be [channels, height, width] with 1 .. {MAX_CHANNELS} channels and "
                       f"sides 1 .. {MAX_SIDE}, got {_short(size)}")
        channels = size[0]
    interp = pcfg.get("interpolation")
    if interp is not None and interp not in INTERPOLATIONS:
        raise _bad(name, "pretrained_cfg.interpolation",
                   f"is {_short(interp)}, not one of {', '.join(INTERPOLATIONS)} (how images "
                   "are resized for the model)")
    crop = pcfg.get("crop_pct")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, (int, float))
                             or not math.isfinite(crop) or not 0 < crop <= 2):
        raise _bad(name, "pretrained_cfg.crop_pct",
                   f"must be a number in (0, 2] (the center-crop fraction), got {_short(crop)}")
    for key in ("mean", "std"):
        value = pcfg.get(key)
        if value is None:
            continue
        if not _numbers(value) or not 1 <= len(value) <= MAX_CHANNELS:
            raise _bad(name, f"pretrained_cfg.{key}", f"must be a list of numbers (one per "
                       f"input channel), got {_short(value)}")
        if not all(math.isfinite(v) for v in value):
            raise _bad(name, f"pretrained_cfg.{key}", f"holds a non-finite value: {_short(value)}")
        if key == "std" and not all(v > 0 for v in value):
            raise _bad(name, "pretrained_cfg.std",
                       f"must be > 0 (inputs are divided by it), got {_short(value)}")
        if channels is not None and len(value) not in (1, channels):
            raise _bad(name, f"pretrained_cfg.{key}",
                       f"has {len(value)} values for {channels} input channels")


def _ints(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def install_hint(dist: str | None, version: str | None, known: Sequence[str]) -> str:
    """What to tell the user about installing ``dist`` (a name taken from a repo).

    >>> install_hint("zoo-core", "0.1", ["zoo-core"])
    'Install it: pip install zoo-core>=0.1'
    >>> install_hint("zoo-c0re", None, ["zoo-core"]).startswith("The repo names distribution")
    True
    """
    if not dist:
        return "Install the distribution that provides it"
    normal = _normal(dist)
    if any(_normal(k) == normal for k in known):
        return f"Install it: pip install {dist}" + (f">={version}" if version else "")
    return (f"The repo names distribution {dist!r} for it; that name came from the repo and "
            "is not verified (it is not in [plugins] known_distributions of registry.toml): "
            "find the plugin's genuine package from a source you trust before installing "
            "anything")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
