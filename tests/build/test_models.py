"""Parametrised over the registry itself: every first-party name resolves, and a sample
of timm, torchvision and zoonet models builds with each strategy."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import zoo_core
from zoo_core.registry._registry import Registry

_REGISTRY = Registry()
FIRST_PARTY = {"timm", "torchvision", "zoonet"}
NAMES = [
    (plugin, name)
    for plugin in sorted(FIRST_PARTY)
    for name in _REGISTRY.list_models(plugin=plugin)
]


@pytest.mark.parametrize(
    ("plugin", "name"),
    [pytest.param(p, n, marks=[pytest.mark.slow] if p == "timm" else [], id=f"{p}/{n}")
     for p, n in NAMES],
)
def test_every_first_party_name_resolves(plugin: str, name: str) -> None:
    spec = _REGISTRY.resolve(f"{plugin}/{name}").spec
    assert spec.plugin == plugin and spec.name == name
    assert spec.head and spec.stages, "head and stages are needed by every strategy"
    assert len(spec.data_config.input_size) == 3
    for w in spec.weights:
        assert w.source.startswith(("hf-hub:", "https://", "pkg:")), w
    if spec.weights:
        assert spec.weights_tag("default") is not None


SAMPLE = [
    ("timm/resnet10t", (3, 64, 64)),
    ("timm/convnext_atto", (3, 64, 64)),
    ("timm/efficientnet_b0", (3, 64, 64)),
    ("timm/vit_tiny_patch16_224", (3, 224, 224)),
    ("torchvision/resnet18", (3, 64, 64)),
    ("torchvision/mobilenet_v3_small", (3, 64, 64)),
    ("zoonet/zoonet_m", (3, 32, 32)),
]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Pretrained-like weights generated here: a normally built 1000-class model."""
    out = {}
    root = tmp_path_factory.mktemp("weights")
    for name, _ in SAMPLE:
        torch.manual_seed(0)
        model = zoo_core.build_model(name, 1000, "scratch")
        path = root / (name.replace("/", "_") + ".safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        out[name] = str(path)
    return out


@pytest.mark.parametrize("strategy", ["linear_probe", "partial:1", "finetune", "scratch"])
@pytest.mark.parametrize(("name", "shape"), SAMPLE, ids=[s[0] for s in SAMPLE])
def test_sample_builds_with_each_strategy(name, shape, strategy, weight_files) -> None:
    weights = None if strategy == "scratch" else weight_files[name]
    model = zoo_core.build_model(name, 3, strategy, weights=weights)
    info = model.zoo
    assert info.num_classes == 3 and info.strategy == strategy
    head = model.get_submodule(info.head)
    assert all(n.startswith(info.head + ".") for n in info.trainable) is (
        strategy == "linear_probe")
    assert any(True for _ in head.parameters())
    if weights is not None:
        # the 1000-class head of the file was dropped, the rest loaded exactly
        dropped = info.dropped_head_keys
        assert dropped and all(k.startswith(info.head) for k in dropped)
        ref = zoo_core.build_model(name, 1000, "finetune", weights=weights).state_dict()
        for key, value in model.state_dict().items():
            if not key.startswith(info.head + "."):
                assert torch.equal(value, ref[key]), key
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 3)
    assert not any(p.is_meta for p in model.parameters())
