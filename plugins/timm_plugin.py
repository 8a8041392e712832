"""First-party plugin: every timm architecture and pretrained tag.

Names are listed lazily: ``timm.list_models()`` runs once per installed timm version and
the result is cached by the registry, so ``zoo list`` does not import timm afterwards.
Weights tags map to timm's Hub repos (``hf-hub:timm/<arch>.<tag>``) or published URLs.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import zoo_core
from zoo_core import BackboneFamily, BackboneSpec, DataConfig, WeightsSpec

_FIRST_STRIDE = 4  # a stride-2 stem folds into the first stage


def create_model(*, model_name: str, num_classes: int, **kwargs: Any) -> Any:
    """Builder: a randomly initialised timm model (weights are loaded by zoo_core)."""
    import timm

    return timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs)


def _list_names() -> dict[str, list[str]]:
    import timm

    names: dict[str, list[str]] = {arch: [] for arch in timm.list_models()}
    for full in timm.list_pretrained():
        arch, _, tag = full.partition(".")
        names.setdefault(arch, []).append(tag)
    return names


def _data_config(cfg: Any) -> DataConfig:
    return DataConfig(
        input_size=tuple(cfg.input_size),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        interpolation=cfg.interpolation or "bicubic",
        crop_pct=float(cfg.crop_pct or 0.875),
        first_conv=cfg.first_conv if isinstance(cfg.first_conv, str) else None,
    )


def _weights(arch: str, tag: str, cfg: Any) -> WeightsSpec | None:
    if cfg.hf_hub_id:
        source = f"hf-hub:{cfg.hf_hub_id}"
        filename = "model.safetensors"
    elif cfg.url and str(cfg.url).endswith(".safetensors"):
        source, filename = cfg.url, "model.safetensors"
    else:
        return None  # only pickled checkpoints published: not loadable safely
    return WeightsSpec(
        tag=tag,
        source=source,
        filename=filename,
        num_classes=cfg.num_classes,
        license=cfg.license,
        description=f"timm {arch}.{tag}",
        data_config=_data_config(cfg),
    )


def _resolution_stages(model: Any, head: str) -> tuple[str, ...]:
    """One stage per feature-map stride, declared by its last module (timm's
    ``feature_info`` lists exactly those, with their stride as ``reduction``).

    timm counts the stride-2 stem as a stage of its own (resnet's ``act1``, efficientnet's
    ``blocks.0``); zoo_core folds it into the first stage, as torchvision's layouts do, so
    ``partial:K`` trains the same parameters on both. Non-hierarchical models (every
    feature at one stride: ViT blocks) keep each block as a stage.
    """
    feature_info = getattr(model, "feature_info", None) or []
    modules = dict(model.named_modules())
    listed, seen = [], set()
    for f in feature_info:  # some list a module twice (two branches) or one not built
        module = f.get("module")
        if module and module in modules and module not in seen:
            seen.add(module)
            listed.append((module, f.get("reduction")))
    if listed and len({r for _, r in listed}) > 1 and all(r for _, r in listed):
        last_of: dict[float, str] = {}
        for module, reduction in listed:
            last_of[float(reduction)] = module
        folded = [m for r, m in sorted(last_of.items()) if r >= _FIRST_STRIDE]
        if folded:
            return tuple(folded)
    if listed:
        return tuple(m for m, _ in listed)
    return tuple(
        n for n, m in model.named_children()
        if n != head.split(".")[0] and any(True for _ in m.parameters())
    )


def _get_spec(arch: str) -> BackboneSpec:
    import timm
    import torch
    from timm.models import get_arch_pretrained_cfgs

    cfgs = get_arch_pretrained_cfgs(arch)  # default tag first, as timm orders them
    weights = []
    for full, cfg in cfgs.items():
        tag = full.partition(".")[2]
        if tag and (spec := _weights(arch, tag, cfg)) is not None:
            weights.append(spec)
    # The layout (head, stages) is read off a model built on the meta device: no memory,
    # no initialisation, a few milliseconds.
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    classifier = model.pretrained_cfg.get("classifier") or "head"
    head = classifier if isinstance(classifier, str) else classifier[0]
    stages = _resolution_stages(model, head)
    first = next(iter(cfgs.values()), None)
    data_config = _data_config(first) if first is not None else DataConfig()
    return BackboneSpec(
        name=arch,
        builder="zoo_core_plugins.timm_plugin:create_model",
        builder_kwargs={"model_name": arch},
        head=head,
        stages=stages,
        weights=tuple(weights),
        default_weights=weights[0].tag if weights else None,
        data_config=data_config,
        license=weights[0].license if weights else None,
        description=f"timm {arch}",
    )


@zoo_core.hookimpl
def register_backbones(register: Any) -> None:
    register(BackboneFamily(
        name="timm",
        version=importlib.metadata.version("timm"),
        list_names=_list_names,
        get_spec=_get_spec,
    ))
