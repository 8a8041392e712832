"""build_model: resolve → construct → load weights → head → strategy.

The whole pipeline reads top to bottom in :func:`build_model`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo_core._specs import BackboneSpec, ModelInfo, WeightsSpec
from zoo_core.build._author_checks import check_declared_modules, default_weights_problem, who
from zoo_core.build._swallowed import check_swallowed
from zoo_core.build._validate import call_builder, validate_built
from zoo_core.errors import InvalidArgumentError, SpecError, StrategyError, WeightsError
from zoo_core.layout._model_args import adapt_data_config, check_caller_args
from zoo_core.registry._registry import Registry, get_registry, resolve_builder
from zoo_core.saved._sources import is_saved_model_name
from zoo_core.strategies._strategies import (
    Strategy,
    apply_strategy,
    decide_strategy,
    parse_strategy,
)
from zoo_core.weights._adapt_weights import weights_adapter

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["build_model"]

log = logging.getLogger("zoo_core.builder")

_SOURCE_PREFIXES = ("hf-hub:", "http://", "https://", "file://", "pkg:")


def build_model(
    name: str | os.PathLike[str],
    num_classes: int | None = None,
    strategy: str | None = "auto",
    *,
    weights: str | os.PathLike[str] | None = "default",
    num_train_samples: int | None = None,
    similarity: float | None = None,
    label_names: Sequence[str] | None = None,
    fast: bool = True,
    device: Any = None,
    registry: Registry | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """Build a ready-to-train model: the right head, frozen per the strategy.

    ``name`` is a registered model (``resnet18``, ``timm/resnet18``, ``resnet18.a1_in1k``)
    or a saved model: ``hf-hub:org/repo[@rev]``, ``local-dir:PATH`` or a path to a folder
    written by ``save_pretrained`` / ``zoo finetune`` (labels, head and strategy kept).
    ``weights`` is ``"default"`` (the model's default pretrained tag), a tag, a local
    ``.safetensors`` path or directory, an ``http(s)://`` URL, ``hf-hub:org/repo[@rev]``,
    or ``None`` (architecture only). ``strategy`` is ``linear_probe``, ``finetune``,
    ``partial:K`` (the last K stages), ``first:K`` (the first K), ``stage:I`` (stage I
    alone, from 0), ``scratch`` or ``auto`` (decided from ``num_train_samples`` and
    ``similarity`` with the transfer-learning table; the reason lands in
    ``model.zoo.strategy_reason``).

    Other keyword arguments go to the plugin's builder, as with ``timm.create_model``:
    ``in_chans=1`` (pretrained input filters adapted with timm's ``adapt_input_conv``),
    ``img_size`` (position embeddings resampled), ``drop_rate``, ``drop_path_rate``,
    ``global_pool``... They are recorded in ``model.zoo.model_args`` and in a saved
    ``config.json``; one the builder rejects is an ``InvalidArgumentError``.

    >>> import zoo_core
    >>> model = zoo_core.build_model("zoonet_s", num_classes=3, strategy="linear_probe")
    >>> model.zoo.strategy, model.zoo.weights_tag, model.head.out_features
    ('linear_probe', 'glyphs', 3)
    >>> sorted({n.split(".")[0] for n in model.zoo.trainable})
    ['head']
    """
    if is_saved_model_name(name):  # a Hub repo or a local folder: config.json says what
        if not (isinstance(weights, str) and weights == "default"):
            raise InvalidArgumentError(
                f"weights={weights!r} does not apply to the saved model {os.fspath(name)!r}: "
                "its own model.safetensors is loaded. Drop weights=, or pass "
                "strategy='scratch' for its architecture with random weights")
        return _build_saved(name, num_classes, strategy, num_train_samples=num_train_samples,
                            similarity=similarity, label_names=label_names, fast=fast,
                            device=device, registry=registry, model_kwargs=model_kwargs)
    reg = registry or get_registry()
    # 1. validate cheap arguments before any heavy work
    _check_num_classes(num_classes, reg.catalog.max_num_classes)
    parsed = parse_strategy(reg.catalog.default_strategy if strategy is None else strategy)
    # 2. resolve the name to one plugin's spec
    resolved = reg.resolve(name)
    spec = resolved.spec
    model_args = check_caller_args(model_kwargs, spec.qualified_name)
    if resolved.tag is not None and weights == "default":
        weights = resolved.tag
    wspec = _weights_spec(spec, weights, parsed)
    # 3. decide the strategy
    reason = f"chosen by the caller: {parsed}"
    if parsed.kind == "auto":
        kind, reason = decide_strategy(
            has_pretrained=wspec is not None, num_train_samples=num_train_samples,
            num_classes=num_classes, similarity=similarity, thresholds=reg.catalog.auto,
        )
        parsed = parse_strategy(kind)
        if kind == "scratch":
            wspec = None
    if num_classes is None:
        if wspec is None or wspec.num_classes is None:
            raise InvalidArgumentError(
                f"num_classes is required for {spec.qualified_name!r} (no pretrained head "
                "to keep); pass num_classes=<number of classes in your data>"
            )
        num_classes = wspec.num_classes
    return build_from_spec(
        spec, num_classes, parsed, reason, wspec, label_names=label_names, fast=fast,
        device=device, model_args=model_args,
    )


def _build_saved(name: Any, num_classes: int | None, strategy: str | None, *,
                 num_train_samples: int | None, similarity: float | None,
                 label_names: Sequence[str] | None, fast: bool, device: Any,
                 registry: Registry | None, model_kwargs: dict[str, Any]) -> nn.Module:
    """Steps 1-3 read off a saved model's config.json (``zoo_core.saved._pretrained``)."""
    from zoo_core.saved._pretrained import plan_saved_model

    reg = registry or get_registry()
    _check_num_classes(num_classes, reg.catalog.max_num_classes)
    model_args = check_caller_args(model_kwargs, str(name))
    plan = plan_saved_model(name, num_classes, strategy, num_train_samples=num_train_samples,
                            similarity=similarity, registry=reg, model_args=model_args)
    model = build_from_spec(plan.spec, plan.num_classes, plan.strategy, plan.reason,
                            plan.wspec, label_names=label_names, fast=fast, device=device,
                            base_model=plan.base_model, extra=plan.extra,
                            model_args=plan.model_args)
    plan.check(model)
    return model


def build_from_spec(
    spec: BackboneSpec,
    num_classes: int,
    strategy: Strategy,
    reason: str,
    wspec: WeightsSpec | None,
    *,
    label_names: Sequence[str] | None = None,
    fast: bool = True,
    device: Any = None,
    base_model: str | None = None,
    extra: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
) -> nn.Module:
    """Steps 4-7 of the pipeline, shared with ``hf-hub:`` and local-folder loading.

    ``model_args`` were checked by :mod:`zoo_core.layout._model_args`.
    """
    builder = resolve_builder(spec)
    model_args = dict(model_args or {})
    clash = sorted(set(model_args) & set(spec.builder_kwargs))
    if clash:
        raise InvalidArgumentError(
            f"model argument(s) {', '.join(clash)} of {spec.qualified_name!r} are set by its "
            f"plugin {spec.plugin!r} ({spec.distribution}); remove them from the call")
    kwargs = {**spec.builder_kwargs, **model_args}
    if model_args:  # one the builder swallows through **kwargs is not recorded as applied
        check_swallowed(spec, builder, num_classes, model_args)

    def construct() -> nn.Module:
        if not model_args:  # a builder that fails or returns no module: the plugin's bug
            model = call_builder(spec, builder, num_classes, kwargs)
        else:
            try:
                model = builder(num_classes=num_classes, **kwargs)
            except Exception as exc:  # with the caller's model arguments: name them
                raise _rejected(spec, model_args, exc) from exc
            model = call_builder(spec, lambda **_: model, num_classes, {})
        # a head that names no module: said now, not as the weights' head keys not fitting
        check_declared_modules(model, spec)
        return model

    started = time.perf_counter()
    # 4. construct, 5. load weights (fast path: meta + aligned read + assign), 6. head
    dropped: tuple[str, ...] = ()
    sha256 = None
    if wspec is None:
        model = construct()
        load_note = "random initialisation"
    else:
        from zoo_core.build._fastload import build_and_load

        path = _fetch(wspec)
        sha256 = wspec.sha256 or _sha256_of(path)
        try:
            model, report = build_and_load(construct, path, head=spec.head, fast=fast,
                                           source_name=wspec.source,
                                           adapt=weights_adapter(model_args))
        except WeightsError as exc:
            if not model_args:
                raise
            shown = ", ".join(f"{k}={v!r}" for k, v in model_args.items())
            raise WeightsError(
                f"{exc} The model was built with model argument(s) {shown}: zoo_core fits "
                "pretrained weights to in_chans (input conv) and img_size (position "
                "embeddings) only; an argument that changes other layers (global_pool='avg' "
                "on a ViT adds fc_norm, for one) needs weights saved with it, or "
                "weights=None") from exc
        dropped = report.dropped_head_keys
        load_note = "fast path" if report.fast_path else f"normal path ({report.fallback_reason})"
        if dropped:
            log.info("%s: dropped pretrained head keys %s (num_classes %s -> %s)",
                     spec.qualified_name, ", ".join(dropped), wspec.num_classes, num_classes)
    validate_built(model, spec, num_classes)  # head/stages exist, in order, head width
    # 7. strategy
    trainable, frozen = apply_strategy(model, strategy, head=spec.head, stages=spec.stages)
    labels = _labels(label_names, wspec, num_classes)
    model.zoo = ModelInfo(  # type: ignore[assignment]
        name=spec.name,
        plugin=spec.plugin,
        distribution=spec.distribution,
        distribution_version=spec.distribution_version,
        num_classes=num_classes,
        head=spec.head,
        stages=spec.stages,
        strategy=str(strategy),
        strategy_reason=reason,
        weights_tag=wspec.tag if wspec is not None else None,
        weights_source=wspec.source if wspec is not None else None,
        weights_sha256=sha256,
        data_config=adapt_data_config(
            wspec.data_config if wspec is not None and wspec.data_config
            else spec.data_config, model_args),
        license=(wspec.license if wspec is not None and wspec.license else spec.license),
        label_names=labels,
        trainable=trainable,
        frozen=frozen,
        dropped_head_keys=dropped,
        base_model=base_model,
        extra={"load": load_note, "seconds": round(time.perf_counter() - started, 4),
               **(extra or {})},
        model_args=model_args,
    )
    if device is not None:
        model.to(device)
    return model


def _rejected(spec: BackboneSpec, model_args: dict[str, Any],
              exc: Exception) -> InvalidArgumentError:
    """The builder raised with the caller's model arguments: name the one it names."""
    text = str(exc)
    named = [k for k in model_args if f"'{k}'" in text or f'"{k}"' in text]
    shown = ", ".join(f"{k}={model_args[k]!r}" for k in (named or model_args))
    what = "does not accept" if isinstance(exc, TypeError) else "failed with"
    return InvalidArgumentError(
        f"model {spec.name!r} of plugin {spec.plugin!r} ({spec.distribution}) {what} model "
        f"argument(s) {shown}: {type(exc).__name__}: {text}. Remove or change "
        f"{'it' if len(named or model_args) == 1 else 'them'}; the plugin's builder is "
        f"{spec.builder if isinstance(spec.builder, str) else 'a callable'}")


def _check_num_classes(num_classes: object, limit: int = 1_000_000) -> None:
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(
            f"num_classes must be a positive int (the number of classes in your data), "
            f"got {num_classes!r}"
        )
    if num_classes > limit:
        raise InvalidArgumentError(
            f"num_classes={num_classes} is above the limit of {limit} classes; raise "
            "[limits] max_num_classes in registry.toml (ZOO_CORE_REGISTRY) if you mean it"
        )


def _looks_like_source(value: str) -> bool:
    return value.startswith(_SOURCE_PREFIXES) or os.sep in value or value.endswith(
        (".safetensors", ".pth", ".pt", ".bin", ".ckpt")) or os.path.exists(value)


def _weights_spec(spec: BackboneSpec, weights: object, strategy: Strategy) -> WeightsSpec | None:
    """Which weights to load, given the ``weights=`` argument and the strategy."""
    if strategy.kind == "scratch":
        if weights not in ("default", None):
            raise InvalidArgumentError(
                f"strategy 'scratch' trains from random initialisation, but weights="
                f"{weights!r} was given; drop weights= or choose finetune/partial:K"
            )
        return None
    if weights is None:
        wspec = None
    elif isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and spec.weights_tag(weights) is None
        and weights != "default" and _looks_like_source(weights)
    ):
        source = os.fspath(weights)
        wspec = WeightsSpec(tag="custom", source=source, description="given by the caller")
    elif isinstance(weights, str):
        problem = default_weights_problem(spec) if weights == "default" else None
        if problem:  # else "default" silently means no pretrained weights at all
            raise SpecError(f"{who(spec)}: {problem}")
        wspec = spec.weights_tag(weights)
        if wspec is None and weights != "default":
            tags = ", ".join(w.tag for w in spec.weights) or "none"
            raise InvalidArgumentError(
                f"{spec.qualified_name!r} has no weights tag {weights!r} (tags: {tags}); "
                "pass a tag, a .safetensors path, a URL, an hf-hub: repo, or None"
            )
    else:
        raise InvalidArgumentError(f"weights must be a string, a path or None, got "
                                   f"{type(weights).__name__}")
    if wspec is None and strategy.needs_pretrained:
        raise StrategyError(
            f"strategy {strategy} needs pretrained weights, but {spec.qualified_name!r} "
            f"{'was asked to build without weights' if weights is None else 'has none'}; "
            "use strategy='scratch', or pass weights=<path, URL or hf-hub: repo>"
        )
    return wspec


def _labels(label_names: Sequence[str] | None, wspec: WeightsSpec | None,
            num_classes: int) -> tuple[str, ...] | None:
    if label_names is not None:
        labels = tuple(str(x) for x in label_names)
        if len(labels) != num_classes:
            raise InvalidArgumentError(
                f"label_names has {len(labels)} entries but num_classes is {num_classes}"
            )
        return labels
    if wspec is not None and wspec.label_names and len(wspec.label_names) == num_classes:
        return tuple(wspec.label_names)
    return None


def _fetch(wspec: WeightsSpec) -> Any:
    """A verified local safetensors file for ``wspec``."""
    from zoo_core.weights._weights import fetch_published_pickle, fetch_weights

    published_pickle = wspec.extra.get("format") == "torch-pickle" and wspec.source.startswith(
        ("http://", "https://")) and wspec.source.endswith(".pth")
    if published_pickle:  # a first-party plugin's published checkpoint: converted safely
        return fetch_published_pickle(wspec.source)
    return fetch_weights(wspec.source, sha256=wspec.sha256, revision=wspec.revision,
                         filename=wspec.filename)


def _sha256_of(path: Any) -> str:
    from zoo_core.weights._weights import known_sha256

    return known_sha256(path)
