"""zoo_core: a plugin-based model zoo for transfer learning on image classification.

>>> import zoo_core
>>> "zoonet_s" in zoo_core.list_models("zoonet*")
True

Only names are defined here; torch, timm and torchvision are imported when a model is
built, never by ``import zoo_core``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zoo_core._specs import (
    BackboneFamily,
    BackboneSpec,
    DataConfig,
    ModelInfo,
    PluginInfo,
    WeightsSpec,
)
from zoo_core.errors import (
    ConfigError,
    DuplicateModelError,
    HubError,
    InvalidArgumentError,
    PluginLoadError,
    ShadowedModelWarning,
    SpecError,
    StrategyError,
    TransferNotRecommendedError,
    UnknownModelError,
    WeightsError,
    ZooError,
)
from zoo_core.hookspecs import hookimpl

__version__ = "0.1.0"

# Public callables live in private modules that may import torch; load them on first use.
_LAZY = {
    "Registry": "zoo_core.registry._registry",
    "build_model": "zoo_core.build._builder",
    "build_on_meta": "zoo_core.layout._layout",
    "check_plugin": "zoo_core.build._validate",
    "hash_file": "zoo_core.build._validate",
    "convert_checkpoint": "zoo_core.weights._weights",
    "decide_strategy": "zoo_core.strategies._strategies",
    "finetune": "zoo_core.train",
    "get_model_info": "zoo_core.registry._registry",
    "list_models": "zoo_core.registry._registry",
    "list_plugins": "zoo_core.registry._registry",
    "param_groups": "zoo_core.strategies._strategies",
    "push_to_hub": "zoo_core.hub._hub",
    "rank_models": "zoo_core.rank",
    "resolution_stages": "zoo_core.layout._layout",
    "save_pretrained": "zoo_core.hub._hub",
    "stage_table": "zoo_core.layout._layout",
    "stratified_split": "zoo_core.data._data",
}

__all__ = [
    "BackboneFamily",
    "BackboneSpec",
    "ConfigError",
    "DataConfig",
    "DuplicateModelError",
    "HubError",
    "InvalidArgumentError",
    "ModelInfo",
    "PluginInfo",
    "PluginLoadError",
    "Registry",
    "ShadowedModelWarning",
    "SpecError",
    "StrategyError",
    "TransferNotRecommendedError",
    "UnknownModelError",
    "WeightsError",
    "WeightsSpec",
    "ZooError",
    "__version__",
    "build_model",
    "build_on_meta",
    "check_plugin",
    "convert_checkpoint",
    "decide_strategy",
    "finetune",
    "get_model_info",
    "hash_file",
    "hookimpl",
    "list_models",
    "list_plugins",
    "param_groups",
    "push_to_hub",
    "rank_models",
    "resolution_stages",
    "save_pretrained",
    "stage_table",
    "stratified_split",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from zoo_core.build._builder import build_model
    from zoo_core.build._validate import check_plugin, hash_file
    from zoo_core.data._data import stratified_split
    from zoo_core.hub._hub import push_to_hub, save_pretrained
    from zoo_core.layout._layout import build_on_meta, resolution_stages, stage_table
    from zoo_core.rank import rank_models
    from zoo_core.registry._registry import Registry, get_model_info, list_models, list_plugins
    from zoo_core.strategies._strategies import decide_strategy, param_groups
    from zoo_core.train import finetune
    from zoo_core.weights._weights import convert_checkpoint
