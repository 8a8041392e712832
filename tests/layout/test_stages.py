"""``partial:K`` means the same on every provider: stages are resolution stages.

Built on the meta device (no weights, no memory), so each case takes a fraction of a
second once timm and torchvision are imported.
"""

from __future__ import annotations

import functools

import pytest

import zoo_core
from zoo_core.registry._registry import get_registry, resolve_builder
from zoo_core.strategies._strategies import apply_strategy, parse_strategy

SHARED = [  # (timm name, torchvision name): one architecture, two providers
    ("resnet18", "resnet18"),
    ("efficientnet_b0", "efficientnet_b0"),
    ("densenet121", "densenet121"),
    ("convnext_tiny", "convnext_tiny"),
    ("mobilenetv2_100", "mobilenet_v2"),
    ("swin_tiny_patch4_window7_224", "swin_t"),
    ("inception_v3", "inception_v3"),  # unpadded convs: 299 -> 73 -> 71 is still stride 4
]


def _table(qualified: str):
    spec = get_registry().resolve(qualified).spec
    builder = resolve_builder(spec)
    model = zoo_core.build_on_meta(lambda: builder(num_classes=10, **spec.builder_kwargs))
    return zoo_core.stage_table(model, spec.head, spec.stages)


@pytest.mark.parametrize(("timm_name", "tv_name"), SHARED)
def test_timm_and_torchvision_stages_hold_the_same_parameters(timm_name, tv_name):
    a, b = _table(f"timm/{timm_name}"), _table(f"torchvision/{tv_name}")
    assert len(a.stages) == len(b.stages) == 4  # strides 4, 8, 16, 32
    assert a.stage_params == b.stage_params
    assert a.head_params == b.head_params
    assert [a.partial_trainable(k) for k in range(1, 5)] == [
        b.partial_trainable(k) for k in range(1, 5)]


def test_stem_folds_into_the_first_stage_on_both_providers():
    assert get_registry().resolve("timm/resnet18").spec.stages == (
        "layer1", "layer2", "layer3", "layer4")
    assert get_registry().resolve("torchvision/resnet18").spec.stages == (
        "layer1", "layer2", "layer3", "layer4")


def test_table_counts_match_what_apply_strategy_trains():
    spec = get_registry().resolve("torchvision/densenet121").spec
    builder = resolve_builder(spec)
    table = _table("torchvision/densenet121")
    for k in range(1, len(spec.stages) + 1):
        model = zoo_core.build_on_meta(lambda: builder(num_classes=10, **spec.builder_kwargs))
        apply_strategy(model, parse_strategy(f"partial:{k}"), head=spec.head,
                       stages=spec.stages)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trained == table.partial_trainable(k)
    # densenet121 partial:1 trains the whole stride-32 stage, not only norm5
    assert table.partial_trainable(1) > 0.3 * table.total


def test_non_hierarchical_models_keep_each_block():
    assert len(get_registry().resolve("timm/vit_tiny_patch16_224").spec.stages) == 12
    assert len(get_registry().resolve("torchvision/vit_l_16").spec.stages) == 24


def test_builders_that_compute_with_real_tensors_still_group_by_stride():
    # torchvision's regnet computes its widths with real tensors while constructing
    assert get_registry().resolve("torchvision/regnet_x_400mf").spec.stages == (
        "trunk_output.block1", "trunk_output.block2", "trunk_output.block3",
        "trunk_output.block4")
    (check,) = zoo_core.check_plugin("torchvision", pattern="regnet_x_400mf")
    assert check.ok and "forward order" in check.checked and not any(
        "forward failed" in n for n in check.notes)


def test_forward_order_counts_a_container_that_is_never_called_itself():
    import torch.nn as nn

    class Net(nn.Module):  # loops over its ModuleLists, as coat and many ViTs do
        def __init__(self):
            super().__init__()
            self.late = nn.ModuleList([nn.Linear(4, 4)])
            self.early = nn.ModuleList([nn.Linear(4, 4)])

        def forward(self, x):
            for block in [*self.early, *self.late]:
                x = block(x)
            return x

    net = zoo_core.build_on_meta(Net)
    from zoo_core.layout._layout import forward_order

    assert forward_order(net, ["late", "early"], (4,)) == ["early", "late"]


SURGICAL_MODELS = ["zoonet_s", "timm/resnet18", "torchvision/resnet18",
                   pytest.param("timm/vit_tiny_patch16_224", marks=pytest.mark.slow),
                   "torchvision/convnext_tiny"]


@functools.lru_cache(maxsize=64)
def _trained(qualified: str, strategy: str) -> frozenset[str]:
    spec = get_registry().resolve(qualified).spec
    builder = resolve_builder(spec)
    model = zoo_core.build_on_meta(lambda: builder(num_classes=10, **spec.builder_kwargs))
    apply_strategy(model, parse_strategy(strategy), head=spec.head, stages=spec.stages)
    return frozenset(n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("qualified", SURGICAL_MODELS)
def test_first_stage_and_partial_cut_the_same_stages_on_every_plugin(qualified):
    # first:K and stage:I go through the same stage contract as partial:K: first:K and
    # partial:(n-K) split the network at the same boundary (the head in both), and the
    # stage:I sets tile it
    spec = get_registry().resolve(qualified).spec
    n = len(spec.stages)
    everything = _trained(qualified, "finetune")
    head = _trained(qualified, "linear_probe")
    assert head and head < everything
    for k in range(1, n):
        first, last = _trained(qualified, f"first:{k}"), _trained(qualified, f"partial:{n - k}")
        assert first & last == head, (k, sorted(first & last - head)[:3])
        assert first | last == everything, (k, sorted(everything - first - last)[:3])
    assert _trained(qualified, f"first:{n}") == everything
    singles = [_trained(qualified, f"stage:{i}") - head for i in range(n)]
    assert all(singles), "every stage trains something"
    for i in range(n):
        for j in range(i + 1, n):
            assert not singles[i] & singles[j], (i, j)
    assert frozenset().union(*singles) | head == everything
    assert _trained(qualified, "first:1") == singles[0] | head  # stem and stage 0


@pytest.mark.parametrize("strategy", ["first:{over}", "stage:{n}", "stage:{over}"])
def test_surgical_out_of_range_names_the_stage_count(strategy):
    spec = get_registry().resolve("timm/resnet18").spec
    n = len(spec.stages)
    bad = strategy.format(n=n, over=n + 3)
    with pytest.raises(zoo_core.StrategyError, match=rf"{bad} .*has {n} .*0: layer1") as info:
        _trained("timm/resnet18", bad)
    kind = bad.split(":")[0]
    assert (f"{kind}:1..{kind}:{n}" if kind == "first" else f"stage:0..stage:{n - 1}") in \
        str(info.value)
