"""Class imbalance (--balance sampler|loss, the 3x warning) and model keyword arguments
through finetune() (issue 20 item 6)."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest

import zoo_core
from zoo_core.train import finetune
from zoo_core.train._balance import (
    ClassImbalanceWarning,
    balanced_order,
    class_weights,
    warn_imbalance,
)

QUIET = {"progress": False, "verbose": False, "threads": 1}


def _folder(root: Path, sizes: dict[str, int]) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, scale in (("train", 1), ("val", 0)):
        for i, (name, n) in enumerate(sizes.items()):
            d = root / split / name
            d.mkdir(parents=True)
            for j in range(max(2, n * scale)):
                px = rng.integers(0, 60, (16, 16, 3)) + 150 * i
                Image.fromarray(px.clip(0, 255).astype("uint8")).save(d / f"{j}.png")
    return root


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("skew") / "data", {"big": 16, "small": 2})


def test_balanced_order_draws_classes_evenly_and_shards_like_distributed_sampler():
    labels = [0] * 90 + [1] * 10
    order = balanced_order(labels, seed=0, epoch=1, world=1, rank=0)
    got = Counter(labels[i] for i in order)
    assert len(order) == 100 and 35 <= got[1] <= 65  # unbalanced it would be ~10
    assert order != balanced_order(labels, seed=0, epoch=2, world=1, rank=0)
    shards = [balanced_order(labels, seed=0, epoch=1, world=3, rank=r) for r in range(3)]
    assert {len(s) for s in shards} == {34}
    # every rank takes its share of the same draw
    assert shards[0][0] == order[0] and shards[1][0] == order[1] and shards[2][0] == order[2]


def test_class_weights_are_sklearn_balanced():
    assert class_weights([30, 10, 0]) == pytest.approx([40 / 60, 40 / 20, 0.0])


def test_imbalance_over_3x_warns_with_the_fix(skewed):
    with pytest.warns(ClassImbalanceWarning, match=r"'big' has 16 images, 'small' 2 "
                      r"\(8.0x\).*--balance sampler.*--balance loss"):
        finetune("zoonet_s", skewed, strategy="finetune", epochs=1, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_imbalance([9, 3], ["a", "b"], None) is None  # 3x exactly: fine


@pytest.mark.parametrize("balance", ["sampler", "loss"])
def test_balance_runs_silently_and_is_recorded(skewed, tmp_path, balance, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClassImbalanceWarning)
        _, res = finetune("zoonet_s", skewed, strategy="finetune", epochs=1, balance=balance,
                          out=tmp_path / "r", progress=False, threads=1)
    assert f"balanced with --balance {balance}" in capsys.readouterr().out
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["arguments"]["balance"] == balance == run["hyperparameters"]["balance"]
    assert 0 <= res.best_val_acc <= 1


def test_balance_sampler_oversamples_the_small_class(skewed, monkeypatch):
    from zoo_core.train import _trainer

    seen: list[int] = []
    real = _trainer._Trainer._micro_step

    def spy(self, opt, x, y, **kw):
        if y is not None:
            seen.extend(y.tolist())
        return real(self, opt, x, y, **kw)

    monkeypatch.setattr(_trainer._Trainer, "_micro_step", spy)
    finetune("zoonet_s", skewed, strategy="finetune", epochs=3, balance="sampler", **QUIET)
    assert len(seen) == 3 * 18 and seen.count(1) >= 12  # unweighted: exactly 3 * 2 = 6


def test_balance_loss_weights_the_cross_entropy_and_the_probe(skewed):
    import torch

    from zoo_core.train._recipe import Recipe, create_loss

    loss = create_loss(Recipe(), [0.5, 2.0])
    assert torch.equal(loss.weight, torch.tensor([0.5, 2.0]))
    with pytest.raises(zoo_core.InvalidArgumentError, match="--balance loss.*--mixup"):
        create_loss(Recipe(mixup=0.2), [0.5, 2.0])
    # linear_probe's lbfgs solver gets the same weights per sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassImbalanceWarning)
        m1, _ = finetune("zoonet_s", skewed, strategy="linear_probe", **QUIET)
    m2, res = finetune("zoonet_s", skewed, strategy="linear_probe", balance="loss", **QUIET)
    assert res.extra["probe"]["solved"] and not torch.equal(m1.head.bias, m2.head.bias)


def test_bad_balance_is_refused_naming_the_flag(digits):
    with pytest.raises(zoo_core.InvalidArgumentError, match="--balance.*sampler, loss.*'up'"):
        finetune("zoonet_s", digits, balance="up", **QUIET)


def test_model_kwargs_reach_the_builder_and_the_record(digits, tmp_path):
    model, _ = finetune("zoonet_s", digits, strategy="finetune", epochs=1,
                        model_kwargs={"drop_rate": 0.25}, out=tmp_path / "r", **QUIET)
    assert model.head_drop.p == 0.25 and dict(model.zoo.model_args) == {"drop_rate": 0.25}
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["arguments"]["model_kwargs"] == {"drop_rate": 0.25}
    assert run["hyperparameters"]["model_args"] == {"drop_rate": 0.25}
    config = json.loads((tmp_path / "r" / "best" / "config.json").read_text())
    assert config["model_args"] == {"drop_rate": 0.25}


def test_bad_model_kwargs_fail_before_any_work(digits):
    with pytest.raises(zoo_core.InvalidArgumentError, match="in_chans=0"):
        finetune("zoonet_s", digits, model_kwargs={"in_chans": 0}, **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="pretrained"):
        finetune("zoonet_s", digits, model_kwargs={"pretrained": True}, **QUIET)


def test_balance_and_model_kwargs_come_back_on_resume(skewed, tmp_path):
    out = tmp_path / "r"
    finetune("zoonet_s", skewed, strategy="finetune", epochs=1, balance="sampler",
             model_kwargs={"drop_rate": 0.2}, out=out, **QUIET)
    model, res = finetune(resume=True, out=out, epochs=2, **QUIET)  # nothing else given
    assert res.resumed_from_epoch == 1 and model.head_drop.p == 0.2
    run = json.loads((out / "run.json").read_text())
    assert run["arguments"]["balance"] == "sampler"
    assert run["arguments"]["model_kwargs"] == {"drop_rate": 0.2}
    with pytest.raises(zoo_core.InvalidArgumentError, match="--balance loss.*sampler"):
        finetune(resume=True, out=out, epochs=3, balance="loss", **QUIET)
