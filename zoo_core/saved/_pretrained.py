"""Load a saved model, from a Hub repo or a local folder: one loader, two sources.

``build_model("hf-hub:org/name[@revision]")``, ``build_model("local-dir:PATH")`` and
``build_model("path/to/folder")`` come here (the sources are :mod:`zoo_core.saved._sources`).
:func:`plan_saved_model` reads ``config.json`` as data, never as code: it may only name a
plugin and model that are installed and registered (``zoo_core`` key), or a timm
architecture (a repo pushed by timm's own ``push_to_hf_hub``, no ``zoo_core`` key), and
``model_args`` from a short list of checked names (:mod:`zoo_core.layout._model_args`). Weights
come from ``model.safetensors`` next to it (the same commit on the Hub); pickled weights
are refused. The builder then runs steps 4-7 of its pipeline with the :class:`Plan`.

Strategy when loading (``strategy=None``, or ``"auto"`` without
``num_train_samples``/``similarity`` hints):

* same ``num_classes`` as the saved model (or ``num_classes=None``): the head is kept and
  the strategy the model was saved with is kept (a model saved with ``scratch`` stays
  ``scratch``, the strategy that trained it, with its trained weights loaded and everything
  trainable; only a caller's ``strategy="scratch"`` means random initialisation); a repo
  without a recorded strategy (pushed by timm) is loaded with ``finetune``;
* another ``num_classes``: the saved head is dropped (``model.zoo.dropped_head_keys``)
  and ``linear_probe`` is applied.

An explicit strategy always wins; ``"auto"`` with hints applies the transfer table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zoo_core._specs import BackboneSpec, DataConfig, WeightsSpec
from zoo_core.errors import HubError, UnknownModelError, ZooError
from zoo_core.layout._model_args import args_from_config
from zoo_core.saved._repo_format import DIST_RE, IDENT_RE, SHA256_RE, WEIGHTS_NAME, ZOO_KEY
from zoo_core.saved._sources import open_source, prepare_weights

__all__ = ["Plan", "plan_saved_model"]

log = logging.getLogger("zoo_core.hub")


@dataclass(frozen=True)
class Plan:
    """What to build for a saved model: the arguments of ``build_from_spec``."""

    spec: BackboneSpec
    num_classes: int
    strategy: Any  # zoo_core.strategies._strategies.Strategy
    reason: str
    wspec: WeightsSpec | None
    base_model: str
    extra: dict[str, Any]
    model_args: dict[str, Any]
    repo_classes: int

    def check(self, model: Any) -> None:
        """The built model's head must be the saved one when the class count is the same."""
        if (self.num_classes == self.repo_classes and self.wspec is not None
                and model.zoo.dropped_head_keys):
            raise HubError(
                f"config.json of {self.base_model} says {self.repo_classes} classes, but the "
                f"head of its {WEIGHTS_NAME} has another shape "
                f"({', '.join(model.zoo.dropped_head_keys)}); the files do not belong "
                "together: save or push the model again (zoo_core.save_pretrained / "
                "push_to_hub)")


def plan_saved_model(
    name: Any,
    num_classes: int | None,
    strategy: str | None,
    *,
    num_train_samples: int | None,
    similarity: float | None,
    registry: Any,
    model_args: Mapping[str, Any],
) -> Plan:
    """Read the saved model ``name`` (see the module docstring) into a :class:`Plan`.

    ``model_args`` are the caller's (already checked); they override the saved ones.
    """
    from zoo_core.saved._config_json import check_config, read_config
    from zoo_core.strategies._strategies import decide_strategy, parse_strategy

    reg = registry
    source = open_source(name)
    name = source.name
    config = read_config(source.config_path, name)
    check_config(config, name, max_num_classes=reg.catalog.max_num_classes)
    zoo = config.get(ZOO_KEY)
    spec = _resolve_spec(reg, config, zoo, name)
    saved_args = args_from_config(config.get("model_args"), name)
    merged_args = dict(sorted({**saved_args, **model_args}.items()))
    repo_classes = _positive_int(config.get("num_classes"), "num_classes", name)
    pcfg = config.get("pretrained_cfg")
    if repo_classes is None and isinstance(pcfg, Mapping):
        repo_classes = _positive_int(pcfg.get("num_classes"), "pretrained_cfg.num_classes",
                                     name)
    if repo_classes is None:
        raise HubError(f"config.json of {name} has no num_classes; it is not a classifier "
                       "repo zoo_core can load")
    target = repo_classes if num_classes is None else num_classes
    same_head = target == repo_classes

    kept = strategy is None or (strategy == "auto" and num_train_samples is None
                                and similarity is None)
    if kept:
        parsed, reason = _default_strategy(zoo, same_head, repo_classes, target, name)
        if parsed.kind == "partial" and parsed.k > len(spec.stages):
            raise HubError(
                f"config.json of {name}: its strategy {str(parsed)!r} ({ZOO_KEY}.strategy) "
                f"asks for {parsed.k} stages, but {spec.name!r} has {len(spec.stages)} "
                f"({', '.join(spec.stages)}); the repo's config is invalid: pass strategy= "
                f"(partial:1..partial:{len(spec.stages)}, finetune, ...) or fix config.json")
    else:
        parsed = parse_strategy(strategy)
        reason = f"chosen by the caller: {parsed}"
        if parsed.kind == "auto":
            kind, reason = decide_strategy(
                has_pretrained=True, num_train_samples=num_train_samples,
                num_classes=target, similarity=similarity, thresholds=reg.catalog.auto)
            parsed = parse_strategy(kind)

    pin = zoo.get("weights_sha256") if isinstance(zoo, Mapping) else None
    if pin is not None and not (isinstance(pin, str) and SHA256_RE.fullmatch(pin)):
        raise HubError(f"config.json of {name} has a malformed zoo_core.weights_sha256")
    wspec: WeightsSpec | None = None
    # a kept "scratch" (the model was trained from scratch) loads its trained weights; a
    # caller's strategy="scratch" means random initialisation
    if parsed.kind != "scratch" or kept:
        wspec = WeightsSpec(
            tag=source.kind,
            source=source.weights,
            sha256=pin,
            filename=WEIGHTS_NAME,
            num_classes=repo_classes,
            label_names=_config_labels(config, repo_classes, name),
            license=_config_license(config, zoo),
            description=f"weights of {name}",
            data_config=_config_data_config(pcfg, spec.data_config, name),
        )
        weights_path = prepare_weights(source, pin)
        if "in_chans" not in model_args:  # the caller's in_chans adapts the weights
            _check_channels(config, saved_args, wspec.data_config, weights_path, name)
    return Plan(spec=spec, num_classes=target, strategy=parsed, reason=reason, wspec=wspec,
                base_model=name, extra=dict(source.extra), model_args=merged_args,
                repo_classes=repo_classes)


def _resolve_spec(reg: Any, config: Mapping[str, Any], zoo: Any, name: str) -> Any:
    if zoo is not None:
        if not isinstance(zoo, Mapping):
            raise HubError(f"config.json of {name}: the {ZOO_KEY!r} key is not an object")
        plugin, model = zoo.get("plugin"), zoo.get("model")
        for field, value in (("plugin", plugin), ("model", model)):
            if not isinstance(value, str) or not IDENT_RE.fullmatch(value):
                raise HubError(f"config.json of {name}: {ZOO_KEY}.{field} is missing or not a "
                               f"valid name ({value!r})")
        dist = zoo.get("distribution")
        dist = dist if isinstance(dist, str) and DIST_RE.fullmatch(dist) else None
        version = zoo.get("distribution_version")
        version = version if isinstance(version, str) and re.fullmatch(
            r"[A-Za-z0-9.+!_-]{1,64}", version) else None
        try:
            return reg.resolve(f"{plugin}/{model}").spec
        except UnknownModelError as exc:
            error = exc
        installed = {p.name: p for p in reg.plugins()}
        if plugin not in installed:
            from zoo_core.saved._config_json import install_hint

            raise HubError(
                f"{name} was pushed with zoo_core plugin {plugin!r}, which is not installed. "
                f"{install_hint(dist, version, reg.catalog.known_distributions)}") from error
        info = installed[plugin]
        if info.status != "ok":
            raise HubError(f"{name} needs zoo_core plugin {plugin!r}, which is installed "
                           f"({info.distribution} {info.version}) but {info.status}: "
                           f"{info.error}; see `zoo plugins`") from error
        raise HubError(f"{name} needs model {model!r} of plugin {plugin!r}, which that "
                       "plugin does not register"
                       + _version_hint(dist, version, info.distribution, info.version,
                                       plugin)) from error
    arch = config.get("architecture")
    if not isinstance(arch, str) or not IDENT_RE.fullmatch(arch) or not isinstance(
            config.get("pretrained_cfg"), Mapping):
        raise HubError(
            f"config.json of {name} has neither a {ZOO_KEY!r} key (a repo pushed by zoo_core) "
            "nor timm's 'architecture' + 'pretrained_cfg' (a repo pushed by timm); zoo_core "
            "cannot tell which architecture to build")
    try:
        return reg.resolve(f"timm/{arch}").spec
    except UnknownModelError as exc:
        error = exc
    installed = {p.name: p for p in reg.plugins()}
    if "timm" not in installed or installed["timm"].status != "ok":
        raise HubError(f"{name} is a timm repo (architecture {arch!r}) but the zoo_core timm "
                       "plugin is not available; see `zoo plugins`") from error
    import importlib.metadata

    raise HubError(
        f"{name} needs timm architecture {arch!r}, which the installed timm "
        f"{importlib.metadata.version('timm')} does not have; upgrade timm "
        "(pip install -U timm)") from error




def _check_channels(config: Mapping[str, Any], saved_args: Mapping[str, Any],
                    dc: DataConfig | None, weights: Any, name: str) -> None:
    """config.json's input channels (``model_args.in_chans``, else ``pretrained_cfg.
    input_size[0]``) must be those of the weights' first conv: otherwise the loader would
    quietly adapt trained weights to another input (a 3-channel model read as 1-channel)."""
    if dc is None or not dc.first_conv:
        return
    key = f"{dc.first_conv}.weight"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as fh:
            shape = fh.get_slice(key).get_shape() if key in fh.keys() else None
    except Exception:  # a broken file: the loader says what is wrong with it
        return
    if not shape or len(shape) != 4:
        return
    if "in_chans" in saved_args:
        claim, where = saved_args["in_chans"], "model_args.in_chans"
    else:
        claim, where = dc.input_size[0], "pretrained_cfg.input_size[0]"
    if claim != shape[1]:
        raise HubError(
            f"config.json of {name} says {claim} input channel(s) ({where}), but the first "
            f"conv of its {WEIGHTS_NAME} ({key}) takes {shape[1]}: the files do not belong "
            f"together. Fix {where} in config.json, or save the model again; to adapt the "
            f"weights to {claim} channel(s) on purpose, pass in_chans={claim} to build_model")


def _version_hint(dist: str | None, pushed: str | None, installed_dist: str,
                  installed: str, plugin: str) -> str:
    """What to do about a model the installed plugin does not register: upgrade only when
    the installed version is older than the one the model was saved with.

    >>> "upgrading will not help" in _version_hint("zoo-core", "0.1.0", "zoo-core", "0.1.0",
    ...                                             "zoonet")
    True
    """
    if not dist or not pushed:
        return f"; see `zoo list '{plugin}/*'` for the models it registers"
    saved = f"; the model was saved with {dist} {pushed}"
    if dist != installed_dist:
        return (f"{saved}, but plugin {plugin!r} comes from {installed_dist} {installed} "
                "here: another distribution under the same plugin name")
    order = _compare_versions(installed, pushed)
    if order == 0:
        return (f"{saved}, the version installed here, so upgrading will not help: the "
                "plugin registers it only in some setups (optional dependency, registry.toml)"
                f" or config.json names a model it never had; see `zoo list '{plugin}/*'`")
    if order is not None and order > 0:
        return (f"{saved}; installed is the newer {installed}, which dropped or renamed it: "
                f"install {dist}=={pushed}, or see `zoo list '{plugin}/*'`")
    return (f"{saved}; installed is {installed}: upgrade with pip install -U "
            f"'{dist}>={pushed}'")


def _compare_versions(a: str, b: str) -> int | None:
    """-1, 0, 1 as version ``a`` is older, equal, newer than ``b``; None if unparseable."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover
        return 0 if a == b else None
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return 0 if a == b else None
    return (va > vb) - (va < vb)


def _positive_int(value: Any, field: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HubError(f"config.json of {name}: {field} must be a positive integer, got "
                       f"{value!r}")
    return value


def _config_labels(config: Mapping[str, Any], num_classes: int,
                   name: str) -> tuple[str, ...] | None:
    labels = config.get("label_names")
    if labels is None and isinstance(config.get("pretrained_cfg"), Mapping):
        labels = config["pretrained_cfg"].get("label_names")
    if labels is None:
        return None
    if isinstance(labels, Mapping):  # timm allows {index: name}
        try:
            by_index = {int(k): v for k, v in labels.items()}
        except (TypeError, ValueError):
            by_index = {}
        labels = [by_index.get(i) for i in range(num_classes)]
    if not isinstance(labels, list) or len(labels) != num_classes or not all(
            isinstance(x, str) for x in labels):
        log.warning("config.json of %s: label_names do not match its %d classes; ignored",
                    name, num_classes)
        return None
    return tuple(labels)


def _config_license(config: Mapping[str, Any], zoo: Any) -> str | None:
    for value in ((zoo or {}).get("license") if isinstance(zoo, Mapping) else None,
                  (config.get("pretrained_cfg") or {}).get("license")
                  if isinstance(config.get("pretrained_cfg"), Mapping) else None):
        if isinstance(value, str) and value:
            return value[:200]
    return None


def _config_data_config(pcfg: Any, default: DataConfig, name: str) -> DataConfig:
    if not isinstance(pcfg, Mapping):
        return default

    def numbers(value: Any, n: int | None, kind: type) -> tuple[Any, ...] | None:
        if not isinstance(value, list) or (n is not None and len(value) != n) or not value:
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return None
        return tuple(kind(v) for v in value)

    input_size = numbers(pcfg.get("input_size"), 3, int) or default.input_size
    mean = numbers(pcfg.get("mean"), None, float) or default.mean
    std = numbers(pcfg.get("std"), None, float) or default.std
    interp = pcfg.get("interpolation")
    crop = pcfg.get("crop_pct")
    first = pcfg.get("first_conv")
    return DataConfig(
        input_size=input_size,  # type: ignore[arg-type]
        mean=mean,
        std=std,
        interpolation=interp if isinstance(interp, str) and len(interp) < 32 else
        default.interpolation,
        crop_pct=float(crop) if isinstance(crop, (int, float)) and not isinstance(crop, bool)
        and 0 < crop <= 2 else default.crop_pct,
        first_conv=first if isinstance(first, str) and IDENT_RE.fullmatch(first) else
        default.first_conv,
    )


def _default_strategy(zoo: Any, same_head: bool, repo_classes: int, target: int,
                      name: str) -> tuple[Any, str]:
    from zoo_core.strategies._strategies import parse_strategy

    if not same_head:
        return parse_strategy("linear_probe"), (
            f"default for a new head on a Hub model: linear_probe ({name} has "
            f"{repo_classes} classes, {target} requested: the pushed head was dropped and the "
            "backbone frozen); pass strategy= to choose another")
    pushed = zoo.get("strategy") if isinstance(zoo, Mapping) else None
    try:
        kept = parse_strategy(pushed) if isinstance(pushed, str) else None
    except ZooError as exc:
        raise HubError(f"config.json of {name}: {ZOO_KEY}.strategy {pushed[:40]!r} is not a "
                       f"strategy ({exc}); pass strategy= to choose one, or fix config.json"
                       ) from None
    if kept is None or kept.kind == "auto":
        return parse_strategy("finetune"), (
            f"same {target} classes as {name}, which records no strategy: its head is kept "
            "and everything is trainable (finetune); pass strategy= to choose another")
    if kept.kind == "scratch":
        return kept, (
            f"{name} was trained from scratch (saved with 'scratch'); its trained weights "
            "are loaded, everything trainable, and the strategy stays 'scratch' (what "
            "trained it); pass strategy= to choose another")
    return kept, (f"kept the strategy {kept} that {name} was pushed with (same {target} "
                  "classes, head kept); pass strategy= to choose another")
