"""First-party plugin: torchvision's classification models.

Listed lazily like timm's (the registry caches the name list per torchvision version).
torchvision publishes its ImageNet weights as pickled ``.pth`` files; zoo_core never
unpickles arbitrary objects: such a file is downloaded, checked against the hash prefix
in its published name, and converted once with ``torch.load(weights_only=True)`` into a
cached safetensors file (see zoo_core's weights module).
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import zoo_core
from zoo_core import BackboneFamily, BackboneSpec, DataConfig, WeightsSpec

# Blocks by family, ordered input -> output; _layout groups them into one stage per
# stride (zoo_core.resolution_stages). Anything before the first stage (the stem) is
# frozen with it; anything after the last (a final norm) trains with it.
_STAGES: list[tuple[str, tuple[str, ...]]] = [
    (r"(resnet|resnext|wide_resnet)\d", ("layer1", "layer2", "layer3", "layer4")),
    (r"regnet_", ("stem", "trunk_output.block1", "trunk_output.block2",
                  "trunk_output.block3", "trunk_output.block4")),
    (r"swin_", tuple(f"features.{i}" for i in range(8))),
    (r"convnext_", tuple(f"features.{i}" for i in range(8))),
    (r"maxvit_", ("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3")),
    (r"shufflenet_", ("conv1", "stage2", "stage3", "stage4", "conv5")),
    (r"googlenet", ("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a",
                    "inception4b", "inception4c", "inception4d", "inception4e",
                    "inception5a", "inception5b")),
    (r"inception_v3", ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                       "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                       "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a",
                       "Mixed_7b", "Mixed_7c")),
]
_HEAD_PROBE = 7919  # a prime no architecture uses as a width: finds the classifier


def _extra_kwargs(name: str) -> dict[str, Any]:
    # Auxiliary classifiers return tuples in train mode; a zoo model returns logits.
    if name in ("googlenet", "inception_v3"):
        return {"aux_logits": False, "init_weights": True}
    return {}


def create_model(*, model_name: str, num_classes: int, in_chans: int = 3,
                 **kwargs: Any) -> Any:
    """Builder: a randomly initialised torchvision model (weights loaded by zoo_core).

    ``in_chans`` (timm's name; torchvision has no such option) rebuilds the first
    convolution for that many input channels.
    """
    from torchvision.models import get_model

    model = get_model(model_name, weights=None, num_classes=num_classes,
                      **_extra_kwargs(model_name), **kwargs)
    if in_chans != 3:
        _set_in_chans(model, model_name, in_chans)
    return model


def _set_in_chans(model: Any, model_name: str, in_chans: int) -> None:
    from torch import nn

    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"{model_name} has no Conv2d input layer to give in_chans={in_chans}")
    name, conv = first
    if conv.in_channels != 3 or conv.groups != 1:
        raise TypeError(f"{model_name}'s first convolution {name!r} does not take RGB input; "
                        "in_chans cannot be changed")
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    owner, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(owner) if owner else model, leaf, new)
    if model_name == "inception_v3":
        model.transform_input = False  # its ImageNet re-normalisation assumes 3 channels


def _list_names() -> dict[str, list[str]]:
    import torchvision
    from torchvision.models import get_model_weights, list_models

    names = {}
    for name in list_models(module=torchvision.models):
        try:
            names[name] = [w.name for w in get_model_weights(name)]
        except (KeyError, ValueError):
            names[name] = []
    return names


def _layout(name: str, input_size: tuple[int, int, int]) -> tuple[str, tuple[str, ...]]:
    model = zoo_core.build_on_meta(
        lambda: create_model(model_name=name, num_classes=_HEAD_PROBE))
    heads = [n for n, m in model.named_modules()
             if getattr(getattr(m, "weight", None), "shape", (0,))[0] == _HEAD_PROBE]
    head = heads[-1]
    candidates = _candidates(model, name, head)
    try:  # one stage per stride (the stem folded into the first), as timm's feature_info
        stages = zoo_core.resolution_stages(model, candidates, input_size)
    except Exception:  # a model the meta forward cannot run keeps its listed blocks
        stages = candidates
    return head, stages


def _candidates(model: Any, name: str, head: str) -> tuple[str, ...]:
    """The architecture's blocks, input to output, before grouping by stride."""
    for pattern, stages in _STAGES:
        if re.match(pattern, name):
            return stages
    if name.startswith("vit_"):  # every encoder layer (12 in vit_b, 24 in vit_l, 32 in vit_h)
        return tuple(f"encoder.layers.{n}" for n, _ in model.encoder.layers.named_children())
    # Generic: descend while the backbone is a single container (vgg's `features`...).
    prefix, module = "", model
    while True:
        kids = [(n, m) for n, m in module.named_children()
                if not (head == f"{prefix}{n}" or head.startswith(f"{prefix}{n}."))
                and any(True for _ in m.parameters())]
        if len(kids) == 1 and any(True for _ in kids[0][1].children()):
            prefix, module = f"{prefix}{kids[0][0]}.", kids[0][1]
            continue
        return tuple(f"{prefix}{n}" for n, _ in kids)


def _get_spec(name: str) -> BackboneSpec:
    from torchvision.models import get_model_weights

    weights = []
    try:
        enum = list(get_model_weights(name))
    except (KeyError, ValueError):
        enum = []
    data_config = DataConfig(interpolation="bilinear")
    for i, w in enumerate(enum):
        keywords = getattr(w.transforms, "keywords", {})
        crop = int(keywords.get("crop_size", 224))
        resize = int(keywords.get("resize_size", 256))
        dc = DataConfig(
            input_size=(3, crop, crop),
            mean=tuple(keywords.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(keywords.get("std", (0.229, 0.224, 0.225))),
            interpolation=str(getattr(keywords.get("interpolation"), "value", "bilinear")),
            crop_pct=round(crop / resize, 4),
        )
        if i == 0:
            data_config = dc
        weights.append(WeightsSpec(
            tag=w.name,
            source=w.url,
            num_classes=len(w.meta.get("categories") or []) or None,
            label_names=tuple(w.meta["categories"]) if w.meta.get("categories") else None,
            license="BSD-3-Clause (torchvision; check the dataset's terms)",
            description=f"torchvision {name} {w.name}",
            data_config=dc,
            extra={"format": "torch-pickle"},  # converted once, safely (see module doc)
        ))
    head, stages = _layout(name, data_config.input_size)
    default = None
    try:
        default = get_model_weights(name).DEFAULT.name  # type: ignore[attr-defined]
    except (AttributeError, KeyError, ValueError):
        default = weights[0].tag if weights else None
    return BackboneSpec(
        name=name,
        builder="zoo_core_plugins.torchvision_plugin:create_model",
        builder_kwargs={"model_name": name},
        head=head,
        stages=stages,
        weights=tuple(weights),
        default_weights=default,
        data_config=data_config,
        license="BSD-3-Clause",
        description=f"torchvision {name}",
    )


@zoo_core.hookimpl
def register_backbones(register: Any) -> None:
    register(BackboneFamily(
        name="torchvision",
        version=importlib.metadata.version("torchvision"),
        list_names=_list_names,
        get_spec=_get_spec,
    ))
