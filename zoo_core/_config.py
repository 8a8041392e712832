"""registry.toml: the declarative catalog read at runtime.

The project ships ``zoo_core/registry.toml``; a user file named by ``ZOO_CORE_REGISTRY``
is laid over it (tables merge, scalars and lists replace). Malformed files raise
:class:`~zoo_core.errors.ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from zoo_core._specs import WeightsSpec
from zoo_core.errors import ConfigError

ENV_REGISTRY = "ZOO_CORE_REGISTRY"
STRATEGY_NAMES = ("auto", "linear_probe", "finetune", "scratch")  # plus partial:K

_TOP_KEYS = {"version", "defaults", "auto", "plugins", "aliases", "weights"}
_WEIGHT_KEYS = {
    "source", "sha256", "revision", "filename", "num_classes", "license", "description",
    "label_names",
}


@dataclass(frozen=True)
class AutoThresholds:
    """Where the transfer-learning table draws its lines."""

    plenty_per_class: int = 100
    high_similarity: float = 0.5  # for a similarity *hint* (build_model), not a measurement
    # measured auto (zoo finetune), see zoo_core/_decide.py and README "How auto decides"
    learnable_margin: float = 0.10
    similar_gain: float = 0.05
    frozen_enough: float = 0.97
    pilot_fraction: float = 0.25
    pilot_min_per_class: int = 50


@dataclass(frozen=True)
class Catalog:
    """The parsed, validated content of one or more registry.toml files."""

    files: tuple[str, ...] = ()
    default_strategy: str = "auto"
    auto: AutoThresholds = AutoThresholds()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    # model name (plain or plugin-qualified) -> tag -> pin
    weights: Mapping[str, Mapping[str, WeightsSpec]] = field(default_factory=dict)

    def pins_for(self, plugin: str, name: str) -> Mapping[str, WeightsSpec]:
        merged: dict[str, WeightsSpec] = dict(self.weights.get(name, {}))
        merged.update(self.weights.get(f"{plugin}/{name}", {}))
        return merged


def project_registry_path() -> Path:
    return Path(str(resources.files("zoo_core").joinpath("registry.toml")))


def load_catalog(extra: str | os.PathLike[str] | None = None) -> Catalog:
    """Read the project's registry.toml, then the ``ZOO_CORE_REGISTRY`` override if set.

    >>> load_catalog().default_strategy
    'auto'
    """
    paths = [project_registry_path()]
    user = extra if extra is not None else os.environ.get(ENV_REGISTRY)
    if user:
        user_path = Path(user).expanduser()
        if not user_path.is_file():
            raise ConfigError(
                f"{ENV_REGISTRY} points to {str(user_path)!r}, which is not a file; "
                "fix the path or unset the variable"
            )
        paths.append(user_path)
    data: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        texts[str(path)] = text
        try:
            loaded = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: malformed TOML: {exc}") from exc
        _validate(loaded, str(path), text)
        _merge(data, loaded)
    return _to_catalog(data, tuple(texts))


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _line_of(text: str, key: str) -> int | None:
    """1-based line where ``key`` is assigned or opens a table (best effort)."""
    last = key.split(".")[-1].strip('"')
    pattern = re.compile(
        rf'^\s*(\[.*{re.escape(last)}"?\]|"?{re.escape(last)}"?\s*=)'
    )
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None


def _fail(path: str, text: str, key: str, problem: str) -> ConfigError:
    line = _line_of(text, key)
    where = f"{path}, line {line}" if line else path
    return ConfigError(f"{where}: key {key!r}: {problem}")


def _validate(data: Mapping[str, Any], path: str, text: str) -> None:
    def expect(key: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise _fail(path, text, key, f"expected {what}, got {value!r}")

    for key in data:
        if key not in _TOP_KEYS:
            raise _fail(path, text, key, f"unknown key; expected one of {sorted(_TOP_KEYS)}")
    if "version" in data and data["version"] != 1:
        raise _fail(path, text, "version", "only version = 1 is understood")
    defaults = data.get("defaults", {})
    expect("defaults", defaults, dict, "a table")
    if "strategy" in defaults:
        strategy = defaults["strategy"]
        expect("defaults.strategy", strategy, str, "a string")
        if strategy not in STRATEGY_NAMES and not re.fullmatch(r"partial:\d+", strategy):
            raise _fail(
                path, text, "defaults.strategy",
                f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGY_NAMES)}, partial:K",
            )
    auto = data.get("auto", {})
    expect("auto", auto, dict, "a table")
    for key, value in auto.items():
        if key in ("plenty_per_class", "pilot_min_per_class"):
            expect(f"auto.{key}", value, int, "a positive integer")
            if value < 1:
                raise _fail(path, text, f"auto.{key}", "must be >= 1")
        elif key in ("high_similarity", "frozen_enough", "pilot_fraction", "learnable_margin",
                     "similar_gain"):
            expect(f"auto.{key}", value, (int, float), "a number in [0, 1]")
            if not 0 <= value <= 1:
                raise _fail(path, text, f"auto.{key}", "must be within [0, 1]")
        else:
            raise _fail(path, text, f"auto.{key}", "unknown key")
    plugins = data.get("plugins", {})
    expect("plugins", plugins, dict, "a table")
    for key, value in plugins.items():
        if key not in ("allow", "deny", "prefer"):
            raise _fail(path, text, f"plugins.{key}", "unknown key; use allow, deny or prefer")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, text, f"plugins.{key}",
                        f"expected a list of plugin names, got {value!r}")
    aliases = data.get("aliases", {})
    expect("aliases", aliases, dict, "a table")
    for key, value in aliases.items():
        expect(f"aliases.{key}", value, str, "a model name string")
    weights = data.get("weights", {})
    expect("weights", weights, dict, "a table")
    for model, tags in weights.items():
        expect(f"weights.{model}", tags, dict, "a table of weights tags")
        for tag, pin in tags.items():
            key = f"weights.{model}.{tag}"
            expect(key, pin, dict, "a table with source and sha256")
            unknown = set(pin) - _WEIGHT_KEYS
            if unknown:
                raise _fail(path, text, f"{key}.{sorted(unknown)[0]}",
                            f"unknown key; expected some of {sorted(_WEIGHT_KEYS)}")
            if "source" not in pin:
                raise _fail(path, text, key, "missing 'source'")
            expect(f"{key}.source", pin["source"], str, "a path, URL or hf-hub: string")
            sha = pin.get("sha256")
            valid = isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)
            if sha is not None and not valid:
                raise _fail(path, text, f"{key}.sha256", "expected 64 lowercase hex digits")
            if "num_classes" in pin:
                expect(f"{key}.num_classes", pin["num_classes"], int, "a positive integer")


def _to_catalog(data: Mapping[str, Any], files: tuple[str, ...]) -> Catalog:
    auto = data.get("auto", {})
    plugins = data.get("plugins", {})
    weights: dict[str, dict[str, WeightsSpec]] = {}
    for model, tags in data.get("weights", {}).items():
        weights[model] = {
            tag: WeightsSpec(
                tag=tag,
                source=pin["source"],
                sha256=pin.get("sha256"),
                revision=pin.get("revision"),
                filename=pin.get("filename", "model.safetensors"),
                num_classes=pin.get("num_classes"),
                label_names=tuple(pin["label_names"]) if "label_names" in pin else None,
                license=pin.get("license"),
                description=pin.get("description", ""),
            )
            for tag, pin in tags.items()
        }
    return Catalog(
        files=files,
        default_strategy=data.get("defaults", {}).get("strategy", "auto"),
        auto=AutoThresholds(
            plenty_per_class=auto.get("plenty_per_class", AutoThresholds.plenty_per_class),
            **{k: float(auto[k]) for k in ("high_similarity", "learnable_margin", "similar_gain",
                                           "frozen_enough", "pilot_fraction") if k in auto},
            **{k: int(auto[k]) for k in ("pilot_min_per_class",) if k in auto},
        ),
        allow=tuple(plugins.get("allow", ())),
        deny=tuple(plugins.get("deny", ())),
        prefer=tuple(plugins.get("prefer", ())),
        aliases=dict(data.get("aliases", {})),
        weights=weights,
    )
