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
    "build_model": "zoo_core._builder",
    "convert_checkpoint": "zoo_core._weights",
    "decide_strategy": "zoo_core._strategies",
    "finetune": "zoo_core._finetune",
    "get_model_info": "zoo_core._registry",
    "list_models": "zoo_core._registry",
    "list_plugins": "zoo_core._registry",
    "param_groups": "zoo_core._strategies",
    "push_to_hub": "zoo_core._hub",
    "rank_models": "zoo_core._rank",
    "save_pretrained": "zoo_core._hub",
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
    "SpecError",
    "StrategyError",
    "TransferNotRecommendedError",
    "UnknownModelError",
    "WeightsError",
    "WeightsSpec",
    "ZooError",
    "__version__",
    "build_model",
    "convert_checkpoint",
    "decide_strategy",
    "finetune",
    "get_model_info",
    "hookimpl",
    "list_models",
    "list_plugins",
    "param_groups",
    "push_to_hub",
    "rank_models",
    "save_pretrained",
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
    from zoo_core._builder import build_model
    from zoo_core._finetune import finetune
    from zoo_core._hub import push_to_hub, save_pretrained
    from zoo_core._rank import rank_models
    from zoo_core._registry import get_model_info, list_models, list_plugins
    from zoo_core._strategies import decide_strategy, param_groups
    from zoo_core._weights import convert_checkpoint
