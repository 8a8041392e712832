"""Frozen dataclasses that plugins register and that built models carry.

Dicts appear only at the edges (registry.toml, config.json); inside, everything is one
of these immutable records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Builder = Callable[..., Any]  # (num_classes=int, **kwargs) -> torch.nn.Module


@dataclass(frozen=True)
class DataConfig:
    """What a model expects as input; mirrors timm's pretrained_cfg keys.

    >>> DataConfig(input_size=(3, 32, 32)).input_size
    (3, 32, 32)
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    first_conv: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "first_conv": self.first_conv,
        }


@dataclass(frozen=True)
class WeightsSpec:
    """One pretrained weights tag of a backbone.

    ``source`` is a local path, ``file://`` / ``http(s)://`` URL, ``hf-hub:org/repo[@rev]``
    or ``pkg:package/relative/path`` (a file shipped inside an installed package).
    ``sha256`` pins the file (``zoo hash FILE`` prints it). ``num_classes`` is the width of
    the file's classifier: ``build_model(name)`` without ``num_classes`` keeps that head.
    ``data_config`` overrides the spec's for this tag.
    """

    tag: str
    source: str
    sha256: str | None = None
    revision: str | None = None
    filename: str = "model.safetensors"
    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    license: str | None = None
    description: str = ""
    data_config: DataConfig | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything a plugin declares about one architecture.

    ``builder`` is a callable or a lazy ``"module:function"`` string, called as
    ``builder(num_classes=N, **builder_kwargs)``. ``head`` is the dotted module path of
    the final classifier (``num_classes`` outputs). ``stages`` are the backbone's
    resolution stages, input to output, each named by its last module, used by
    ``partial:K``: whatever precedes the first stage (the stem) counts with it, a module
    between two stages counts with the later one, and whatever follows the last stage (a
    final norm) trains with the last stage. ``default_weights`` is the tag
    ``weights="default"`` loads (the first tag when None). Checked at build time and by
    :func:`zoo_core.check_plugin`.
    """

    name: str
    builder: Builder | str
    head: str
    stages: tuple[str, ...]
    weights: tuple[WeightsSpec, ...] = ()
    default_weights: str | None = None
    data_config: DataConfig = DataConfig()
    license: str | None = None
    description: str = ""
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    plugin: str = ""
    distribution: str = ""
    distribution_version: str = ""

    def weights_tag(self, tag: str | None) -> WeightsSpec | None:
        """The weights spec for ``tag`` ("default" means ``default_weights``)."""
        if tag in (None, "default"):
            tag = self.default_weights or (self.weights[0].tag if self.weights else None)
        for w in self.weights:
            if w.tag == tag:
                return w
        return None

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}/{self.name}" if self.plugin else self.name

    def replace(self, **changes: Any) -> BackboneSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class BackboneFamily:
    """A lazily listed group of backbones (for example every timm architecture).

    ``list_names()`` may be expensive (it may import the library); its result, a mapping
    of model name to its pretrained weights tags, is cached on disk keyed by ``version``
    and the plugin distribution's version. ``get_spec(name)`` is called only to build or
    describe one model.
    """

    name: str
    version: str
    list_names: Callable[[], Mapping[str, list[str]]]
    get_spec: Callable[[str], BackboneSpec]


@dataclass(frozen=True)
class PluginInfo:
    """What ``list_plugins()`` reports for one plugin."""

    name: str
    distribution: str
    version: str
    status: str  # "ok" | "failed" | "blocked"
    error: str | None = None
    num_models: int = 0
    provides: tuple[str, ...] = ()  # "timm 1.0.15": the libraries whose models it lists


@dataclass(frozen=True)
class ModelInfo:
    """Resolved metadata a built model carries as ``model.zoo``."""

    name: str
    plugin: str
    distribution: str
    distribution_version: str
    num_classes: int
    head: str
    stages: tuple[str, ...]
    strategy: str
    strategy_reason: str
    weights_tag: str | None
    weights_source: str | None
    weights_sha256: str | None
    data_config: DataConfig
    license: str | None = None
    label_names: tuple[str, ...] | None = None
    trainable: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()
    dropped_head_keys: tuple[str, ...] = ()
    base_model: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    model_args: Mapping[str, Any] = field(default_factory=dict)  # build_model(**model_kwargs)

    def replace(self, **changes: Any) -> ModelInfo:
        return dataclasses.replace(self, **changes)
