"""Each strategy on a tiny pretrained model: frozen means frozen, trainable means trained."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo_core
from zoo_core.strategies._strategies import decide_strategy, parse_strategy

STRATEGIES = ["linear_probe", "partial:1", "partial:2", "partial:3", "first:1", "first:2",
              "first:3", "stage:0", "stage:1", "stage:2", "finetune", "scratch"]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {f"param:{n}": p.detach().clone() for n, p in model.named_parameters()}
    state.update({f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return state


def _one_sgd_step(model: torch.nn.Module) -> None:
    torch.manual_seed(0)
    opt = torch.optim.SGD(zoo_core.param_groups(model, weight_decay=1e-4), lr=0.5)
    model.train()
    x = torch.randn(16, 3, 32, 32)
    y = torch.randint(0, model.zoo.num_classes, (16,))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_frozen_is_bitwise_unchanged_and_trainable_changes(strategy: str) -> None:
    model = zoo_core.build_model("zoonet_s", num_classes=3, strategy=strategy)
    before = _snapshot(model)
    _one_sgd_step(model)
    after = _snapshot(model)
    info = model.zoo
    trainable, frozen = set(info.trainable), set(info.frozen)
    assert trainable and trainable.isdisjoint(frozen)
    assert trainable | frozen == {n for n, _ in model.named_parameters()}
    for name in frozen:
        assert torch.equal(before[f"param:{name}"], after[f"param:{name}"]), name
    for name in trainable:
        assert not torch.equal(before[f"param:{name}"], after[f"param:{name}"]), name
    # BatchNorm running statistics: untouched exactly where the module is frozen
    for mod_name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            frozen_bn = f"{mod_name}.weight" in frozen
            changed = not torch.equal(before[f"buffer:{mod_name}.running_mean"],
                                      after[f"buffer:{mod_name}.running_mean"])
            assert changed is not frozen_bn, (mod_name, frozen_bn)
            assert module.training is not frozen_bn
    # the optimizer holds exactly the trainable parameters
    groups = zoo_core.param_groups(model)
    in_groups = {id(p) for g in groups for p in g["params"]}
    by_name = dict(model.named_parameters())
    assert in_groups == {id(by_name[n]) for n in trainable}


def test_strategy_shapes_trainable_sets() -> None:
    probe = zoo_core.build_model("zoonet_s", 3, "linear_probe").zoo
    assert {n.split(".")[0] for n in probe.trainable} == {"head"}
    p1 = zoo_core.build_model("zoonet_s", 3, "partial:1").zoo
    assert all(n.startswith(("head.", "stages.2.")) for n in p1.trainable)
    assert any(n.startswith("stages.2.") for n in p1.trainable)
    full = zoo_core.build_model("zoonet_s", 3, "finetune").zoo
    assert not full.frozen
    scratch = zoo_core.build_model("zoonet_s", 3, "scratch").zoo
    assert scratch.weights_tag is None and scratch.weights_sha256 is None


def test_frozen_batchnorm_survives_train_and_keeps_state_dict() -> None:
    model = zoo_core.build_model("zoonet_s", 3, "linear_probe")
    keys = set(model.state_dict())
    model.train()
    assert not model.stem[1].training
    assert model.head.training
    assert set(model.state_dict()) == keys
    import copy
    import pickle

    clone = copy.deepcopy(model)
    assert not clone.train().stem[1].training
    assert pickle.loads(pickle.dumps(clone.stem[1])).train().training is False


def test_pretrained_weights_really_loaded_and_scratch_differs() -> None:
    a = zoo_core.build_model("zoonet_s", 3, "linear_probe")
    b = zoo_core.build_model("zoonet_s", 3, "finetune")
    c = zoo_core.build_model("zoonet_s", 3, "scratch")
    w = "stages.0.0.weight" if "stages.0.0.weight" in a.state_dict() else next(
        n for n in a.state_dict() if n.startswith("stages.0") and n.endswith("weight"))
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_partial_beyond_stages_is_a_clear_error() -> None:
    with pytest.raises(zoo_core.StrategyError, match=r"partial:9 .* has 3"):
        zoo_core.build_model("zoonet_s", 3, "partial:9")


@pytest.mark.parametrize("bad", ["lin_probe", "partial:x", "partial:0", "", "PARTIAL:1",
                                 "first:0", "first:x", "stage:-1", "stage", "first"])
def test_unknown_strategy(bad: str) -> None:
    with pytest.raises(zoo_core.StrategyError):
        zoo_core.build_model("zoonet_s", 3, bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True, [3]])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(zoo_core.InvalidArgumentError, match="num_classes"):
        zoo_core.build_model("zoonet_s", bad, "linear_probe")  # type: ignore[arg-type]


def test_pretrained_strategy_without_weights_refuses() -> None:
    with pytest.raises(zoo_core.StrategyError, match="needs pretrained weights"):
        zoo_core.build_model("zoonet_s", 3, "linear_probe", weights=None)
    with pytest.raises(zoo_core.InvalidArgumentError, match="scratch"):
        zoo_core.build_model("zoonet_s", 3, "scratch", weights="digits04")
    with pytest.raises(zoo_core.InvalidArgumentError, match="no weights tag 'nope'"):
        zoo_core.build_model("zoonet_s", 3, "finetune", weights="nope")


@pytest.mark.parametrize(
    ("samples", "similarity", "expected"),
    [(20_000, 0.9, "finetune"), (100, 0.9, "linear_probe"), (20_000, 0.1, "scratch"),
     (None, None, "linear_probe"), (50, 0.1, "finetune")],
)
def test_auto_table(samples: int | None, similarity: float | None, expected: str) -> None:
    model = zoo_core.build_model("zoonet_s", 10, "auto", num_train_samples=samples,
                                 similarity=similarity)
    assert model.zoo.strategy == expected
    assert model.zoo.strategy_reason


def test_auto_hint_never_refuses_on_similarity_alone() -> None:
    model = zoo_core.build_model("zoonet_s", 10, "auto", num_train_samples=50, similarity=0.1)
    text = model.zoo.strategy_reason
    assert model.zoo.strategy == "finetune"
    assert "5 images per class" in text and "0.10" in text and "no reason to refuse" in text


def test_auto_without_weights_trains_from_scratch() -> None:
    strategy, reason = decide_strategy(has_pretrained=False)
    assert strategy == "scratch" and "no pretrained weights" in reason


def test_parse_roundtrip() -> None:
    for s in ["linear_probe", "finetune", "scratch", "auto", "partial:3", "first:2",
              "stage:0"]:
        assert str(parse_strategy(s)) == s


def test_surgical_strategies_train_the_input_end() -> None:
    # zoonet_s: stem + stages.0, stages.1, stages.2 (3 stages), then the head
    first = zoo_core.build_model("zoonet_s", 3, "first:1")
    assert {n.split(".")[0] for n in first.zoo.trainable} >= {"head"}
    assert any(n.startswith("stages.0.") for n in first.zoo.trainable)
    assert not any(n.startswith(("stages.1.", "stages.2.")) for n in first.zoo.trainable)
    one = zoo_core.build_model("zoonet_s", 3, "stage:1")
    assert all(n.startswith(("head.", "stages.1.")) for n in one.zoo.trainable)
    assert any(n.startswith("stages.1.") for n in one.zoo.trainable)
    # BatchNorm outside the trained stages stays in eval mode through model.train()
    one.train()
    for name, module in one.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.training is name.startswith("stages.1."), name
    assert one.zoo.strategy == "stage:1"


@pytest.mark.parametrize(("bad", "needle"), [
    ("first:4", r"first:4 asks for more stages than the model has: it has 3 \(0: "),
    ("stage:3", r"stage:3 names a stage the model does not have: it has 3 stage\(s\)"),
])
def test_surgical_beyond_stages_is_a_clear_error(bad: str, needle: str) -> None:
    with pytest.raises(zoo_core.StrategyError, match=needle):
        zoo_core.build_model("zoonet_s", 3, bad)


def test_unknown_surgical_name_suggests_the_form() -> None:
    with pytest.raises(zoo_core.StrategyError, match="Did you mean first:K"):
        parse_strategy("frist:1")
