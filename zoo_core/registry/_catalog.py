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

from zoo_core._specs import BackboneSpec, WeightsSpec
from zoo_core.errors import ConfigError

ENV_REGISTRY = "ZOO_CORE_REGISTRY"
STRATEGY_NAMES = ("auto", "linear_probe", "finetune", "scratch")  # plus partial:K, first:K, stage:I

_TOP_KEYS = {"version", "defaults", "auto", "limits", "plugins", "aliases", "weights"}
MAX_NUM_CLASSES = 1_000_000  # default of [limits] max_num_classes
MAX_NUM_CLASSES_CEILING = 2**31 - 1
_MAX_FILE_BYTES = 16 * 1024 * 1024
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}")
_WEIGHT_KEYS = {
    "source", "sha256", "revision", "filename", "num_classes", "license", "description",
    "label_names",
}


@dataclass(frozen=True)
class AutoThresholds:
    """Where the transfer-learning table draws its lines."""

    plenty_per_class: int = 100
    high_similarity: float = 0.5  # for a similarity *hint* (build_model), not a measurement
    # measured auto (zoo finetune), see zoo_core/strategies/_decide.py and README "How auto decides"
    learnable_margin: float = 0.10
    similar_gain: float = 0.05  # the gain in points, at least (and 2x its standard error)
    similar_share: float = 0.45  # ... closing this share of the room above chance
    refuse_p: float = 0.01  # refuse only when no probe beats its permutation baseline at this
    refuse_gain: float = 0.10  # ... and the pretrained probe's upper bound rules out this gain
    refuse_bound_p: float = 0.05  # ... one-sided, at this level
    pilot_fraction: float = 0.25
    pilot_min_per_class: int = 50
    race_fraction: float = 0.0  # race the table's strategies for this share of the epochs


@dataclass(frozen=True)
class Catalog:
    """The parsed, validated content of one or more registry.toml files."""

    files: tuple[str, ...] = ()
    default_strategy: str = "auto"
    auto: AutoThresholds = AutoThresholds()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    # distributions whose `pip install` command may be printed when a Hub repo names them
    known_distributions: tuple[str, ...] = ()
    max_num_classes: int = MAX_NUM_CLASSES
    aliases: Mapping[str, str] = field(default_factory=dict)
    # model name (plain or plugin-qualified) -> tag -> pin
    weights: Mapping[str, Mapping[str, WeightsSpec]] = field(default_factory=dict)

    def pins_for(self, plugin: str, name: str) -> Mapping[str, WeightsSpec]:
        merged: dict[str, WeightsSpec] = dict(self.weights.get(name, {}))
        merged.update(self.weights.get(f"{plugin}/{name}", {}))
        return merged


def project_registry_path() -> Path:
    return Path(str(resources.files("zoo_core").joinpath("registry.toml")))


def block_reason(name: str, catalog: Catalog, env_allow: str, env_block: str) -> str:
    """Which switch keeps plugin ``name`` out, said so that the user can change it."""
    def listed(var: str) -> list[str]:
        return [x.strip() for x in os.environ.get(var, "").split(",") if x.strip()]

    registry = (f"registry.toml ({ENV_REGISTRY}={os.environ[ENV_REGISTRY]} or the project's)"
                if os.environ.get(ENV_REGISTRY) else "the project's registry.toml")
    if name in listed(env_block):
        return (f"blocked by {env_block}={os.environ.get(env_block, '')} (remove {name!r} "
                "from it to use the plugin)")
    if name in catalog.deny:
        return f"blocked by [plugins] deny in {registry}"
    if listed(env_allow):
        return (f"not in {env_allow}={os.environ.get(env_allow, '')} (add {name!r} to it to "
                "use the plugin)")
    return f"not in [plugins] allow of {registry}"


def load_catalog(extra: str | os.PathLike[str] | None = None) -> Catalog:
    """Read the project's registry.toml, then the ``ZOO_CORE_REGISTRY`` override if set.

    >>> load_catalog().default_strategy
    'auto'
    >>> load_catalog().max_num_classes
    1000000
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
        text = _read_text(path)
        texts[str(path)] = text
        try:
            loaded = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: malformed TOML: {exc}") from exc
        except RecursionError:
            raise ConfigError(f"{path}: malformed TOML: nested too deeply") from None
        _validate(loaded, str(path), text)
        _merge(data, loaded)
    return _to_catalog(data, tuple(texts))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the catalog: {exc}") from exc
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes, larger than the {_MAX_FILE_BYTES}-byte "
                          "limit for a registry.toml")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}, line {line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}); TOML files are UTF-8: re-save it with that encoding") from None


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


# ------------------------------------------------------------------- locating keys

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key_parts(text: str) -> tuple[list[str], str] | None:
    """Parse a TOML dotted key at the start of ``text``; return (parts, rest)."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            j = i + 1
            buf = []
            while j < n and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                return None
            parts.append("".join(buf))
            i = j + 1
        else:
            match = _BARE.match(text, i)
            if not match:
                return None
            parts.append(match.group())
            i = match.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, text[i:]


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every table header and key assignment, by full key path."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            inner = stripped.lstrip("[")
            parsed = _key_parts(inner)
            if parsed and parsed[1].lstrip().startswith("]"):
                table = tuple(parsed[0])
                lines.setdefault(table, number)
            continue
        parsed = _key_parts(stripped)
        if parsed and parsed[1].lstrip().startswith("="):
            path = (*table, *parsed[0])
            for depth in range(len(table) + 1, len(path) + 1):
                lines.setdefault(path[:depth], number)
    return lines


def _fail(path: str, text: str, key: tuple[str, ...] | str, problem: str) -> ConfigError:
    parts = tuple(key.split(".")) if isinstance(key, str) else key
    lines = _key_lines(text)
    line = None
    for depth in range(len(parts), 0, -1):
        line = lines.get(parts[:depth])
        if line is not None:
            break
    where = f"{path}, line {line}" if line else path
    return ConfigError(f"{where}: key {'.'.join(parts)!r}: {problem}")


# ---------------------------------------------------------------------- validation


def _validate(data: Mapping[str, Any], path: str, text: str) -> None:
    def fail(key: tuple[str, ...], problem: str) -> ConfigError:
        return _fail(path, text, key, problem)

    def expect(key: tuple[str, ...], value: Any, kind: type | tuple[type, ...],
               what: str) -> None:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise fail(key, f"expected {what}, got {value!r}")

    def known(table: str, value: Mapping[str, Any], keys: set[str]) -> None:
        for key in value:
            if key not in keys:
                raise fail((table, key), f"unknown key; expected one of {sorted(keys)}")

    for key in data:
        if key not in _TOP_KEYS:
            raise fail((key,), f"unknown key; expected one of {sorted(_TOP_KEYS)}")
    if "version" in data and data["version"] != 1:
        raise fail(("version",), "only version = 1 is understood")
    defaults = data.get("defaults", {})
    expect(("defaults",), defaults, dict, "a table")
    known("defaults", defaults, {"strategy"})
    if "strategy" in defaults:
        strategy = defaults["strategy"]
        expect(("defaults", "strategy"), strategy, str, "a string")
        partial = re.fullmatch(r"(partial|first|stage):(\d+)", strategy)
        if strategy not in STRATEGY_NAMES and not partial:
            raise fail(("defaults", "strategy"),
                       f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGY_NAMES)}, "
                       "partial:K, first:K, stage:I")
        if partial and partial.group(1) != "stage" and int(partial.group(2)) < 1:
            raise fail(("defaults", "strategy"),
                       f"{strategy!r}: K counts trainable stages and must be >= 1 "
                       f"({partial.group(1)}:0 would train the head only: that is "
                       "linear_probe)")
    auto = data.get("auto", {})
    expect(("auto",), auto, dict, "a table")
    for key, value in auto.items():
        if key in ("plenty_per_class", "pilot_min_per_class"):
            expect(("auto", key), value, int, "a positive integer")
            if value < 1:
                raise fail(("auto", key), "must be >= 1")
        elif key in ("high_similarity", "pilot_fraction", "learnable_margin",
                     "similar_gain", "similar_share", "refuse_p", "refuse_gain",
                     "refuse_bound_p", "race_fraction"):
            expect(("auto", key), value, (int, float), "a number in [0, 1]")
            if not 0 <= value <= 1:
                raise fail(("auto", key), "must be within [0, 1]")
            if key == "refuse_bound_p" and not 0 < value < 1:
                raise fail(("auto", key), "must be within (0, 1): a confidence level")
        else:
            raise fail(("auto", key), "unknown key")
    limits = data.get("limits", {})
    expect(("limits",), limits, dict, "a table")
    known("limits", limits, {"max_num_classes"})
    if "max_num_classes" in limits:
        value = limits["max_num_classes"]
        expect(("limits", "max_num_classes"), value, int, "a positive integer")
        if not 1 <= value <= MAX_NUM_CLASSES_CEILING:
            raise fail(("limits", "max_num_classes"),
                       f"must be within 1 .. {MAX_NUM_CLASSES_CEILING}, got {value}")
    plugins = data.get("plugins", {})
    expect(("plugins",), plugins, dict, "a table")
    for key, value in plugins.items():
        if key not in ("allow", "deny", "prefer", "known_distributions"):
            raise fail(("plugins", key),
                       "unknown key; use allow, deny, prefer or known_distributions")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(("plugins", key), f"expected a list of names, got {value!r}")
    aliases = data.get("aliases", {})
    expect(("aliases",), aliases, dict, "a table")
    for key, value in aliases.items():
        expect(("aliases", key), value, str, "a model name string")
    weights = data.get("weights", {})
    expect(("weights",), weights, dict, "a table")
    limit = limits.get("max_num_classes", MAX_NUM_CLASSES)
    for model, tags in weights.items():
        expect(("weights", model), tags, dict, "a table of weights tags")
        for tag, pin in tags.items():
            _validate_pin(("weights", model, tag), pin, limit, fail, expect)


def _validate_pin(key: tuple[str, ...], pin: Any, limit: int, fail: Any, expect: Any) -> None:
    expect(key, pin, dict, "a table with source and sha256")
    unknown = set(pin) - _WEIGHT_KEYS
    if unknown:
        raise fail((*key, sorted(unknown)[0]),
                   f"unknown key; expected some of {sorted(_WEIGHT_KEYS)}")
    if "source" not in pin:
        raise fail(key, "missing 'source'")
    expect((*key, "source"), pin["source"], str, "a path, URL or hf-hub: string")
    if not pin["source"].strip():
        raise fail((*key, "source"), "is empty; give a path, URL or hf-hub: repo")
    sha = pin.get("sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise fail((*key, "sha256"), "expected 64 lowercase hex digits")
    for name in ("revision", "filename", "license", "description"):
        if name in pin:
            expect((*key, name), pin[name], str, "a string")
    revision = pin.get("revision")
    if revision is not None and (not _REVISION.fullmatch(revision) or ".." in revision):
        raise fail((*key, "revision"),
                   f"{revision!r} is not a branch, tag or commit sha (letters, digits, "
                   "'-', '_', '.', '/'; no '..')")
    if revision is not None and not pin["source"].startswith("hf-hub:"):
        raise fail((*key, "revision"), "only applies to hf-hub: sources")
    filename = pin.get("filename")
    if filename is not None:
        parts = filename.split("/")
        if (not filename or filename.startswith("/") or "\\" in filename
                or any(p in ("", ".", "..") for p in parts)):
            raise fail((*key, "filename"),
                       f"{filename!r} must be a relative path inside the repo or directory "
                       "(no '..', no leading '/')")
        if not filename.endswith(".safetensors"):
            raise fail((*key, "filename"),
                       f"{filename!r} is not a .safetensors file; zoo_core loads safetensors only")
    if "num_classes" in pin:
        value = pin["num_classes"]
        expect((*key, "num_classes"), value, int, "a positive integer")
        if not 1 <= value <= limit:
            raise fail((*key, "num_classes"),
                       f"must be within 1 .. {limit} (limits.max_num_classes), got {value}")
    if "label_names" in pin:
        labels = pin["label_names"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise fail((*key, "label_names"), f"expected a list of strings, got {labels!r}")
        classes = pin.get("num_classes")
        if classes is not None and len(labels) != classes:
            raise fail((*key, "label_names"),
                       f"has {len(labels)} names but num_classes is {classes}")


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
                                           "pilot_fraction", "similar_share", "refuse_p",
                                           "refuse_gain", "refuse_bound_p", "race_fraction")
               if k in auto},
            **{k: int(auto[k]) for k in ("pilot_min_per_class",) if k in auto},
        ),
        allow=tuple(plugins.get("allow", ())),
        deny=tuple(plugins.get("deny", ())),
        prefer=tuple(plugins.get("prefer", ())),
        known_distributions=tuple(plugins.get("known_distributions", ())),
        max_num_classes=data.get("limits", {}).get("max_num_classes", MAX_NUM_CLASSES),
        aliases=dict(data.get("aliases", {})),
        weights=weights,
    )


def apply_pins(spec: BackboneSpec, pins: Mapping[str, WeightsSpec]) -> BackboneSpec:
    """registry.toml can pin or redirect any tag, or add a new one."""
    if not pins:
        return spec
    weights = {w.tag: w for w in spec.weights}
    for tag, pin in pins.items():
        old = weights.get(tag)
        if old is None:
            weights[tag] = pin
        else:
            weights[tag] = old.__class__(**{
                **old.__dict__,
                "source": pin.source, "sha256": pin.sha256, "revision": pin.revision,
                "filename": pin.filename,
                "num_classes": pin.num_classes or old.num_classes,
                "license": pin.license or old.license,
                "label_names": pin.label_names or old.label_names,
                "extra": {},  # a pin is a safetensors source of its own
            })
    return spec.replace(weights=tuple(weights.values()))
