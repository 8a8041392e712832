"""The engine around the loop: precision, accumulation, the timm recipe, lp_ft, --keep,
--early-stop, a full disk, Ctrl-C, TensorBoard."""

from __future__ import annotations

import json
import os

import pytest
import torch

import zoo_core
from zoo_core.train import finetune
from zoo_core.train._dist import _Dist
from zoo_core.train._recipe import Recipe, create_optimizer

QUIET = {"progress": False, "verbose": False, "threads": 1}
SGD = {"probe_solver": "sgd"}  # linear_probe trained for epochs, not solved


def test_bf16_step_moves_every_trainable_param_and_no_frozen_one():
    """One bf16 autocast step through accelerate on CPU (partial:1: frozen stem and early
    stages, trainable last stage and head)."""
    ctx = _Dist("cpu", precision="bf16")
    model = zoo_core.build_model("zoonet_s", 5, "partial:1")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable and frozen
    opt = create_optimizer(model, Recipe(), lr=1e-2)
    net, opt = ctx.acc.prepare(model, opt)
    model.train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 5
    with ctx.acc.autocast():
        logits = net(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    ctx.acc.backward(loss)
    opt.step()
    ctx.acc.unwrap_model(net, keep_fp32_wrapper=False)
    after = model.state_dict()
    for name in trainable:
        assert not torch.equal(before[name], after[name]), f"{name} did not move"
        assert after[name].dtype == torch.float32  # master weights stay fp32
    for name in frozen:
        assert torch.equal(before[name], after[name]), f"frozen {name} moved"
    frozen_bn = [k for k in before if k.endswith("running_mean")
                 and k.rsplit(".", 1)[0] + ".weight" in frozen]
    assert frozen_bn and all(torch.equal(before[k], after[k]) for k in frozen_bn)


def test_bf16_run_end_to_end(digits, monkeypatch):
    from zoo_core.train import _runtime

    monkeypatch.setattr(_runtime, "cpu_native_bf16", lambda: True)  # the cost warning: test_kit
    _, res = finetune("zoonet_s", digits, strategy="partial:1", epochs=1, precision="bf16",
                      **QUIET)
    assert res.extra["precision"] == "bf16" and 0 <= res.best_val_acc <= 1


def test_accumulation_equals_one_larger_batch(digits):
    """linear_probe (frozen BN): 2 micro-batches of 8 make the same steps as batches of 16."""
    kw = dict(strategy="linear_probe", epochs=2, seed=2, **SGD, **QUIET)
    a, _ = finetune("zoonet_s", digits, batch_size=16, **kw)
    b, res = finetune("zoonet_s", digits, batch_size=8, accumulate=2, **kw)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_recipe_flags_reach_timm(digits):
    model = zoo_core.build_model("zoonet_s", 5, "finetune")
    opt = create_optimizer(model, Recipe(opt="sgd", layer_decay=0.5, weight_decay=0.05), 0.1)
    assert isinstance(opt, torch.optim.SGD)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert len(scales) >= 3 and scales[-1] == 1.0 and scales[0] < 0.5  # stages decay
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert all(p.ndim <= 1 for g in no_decay for p in g["params"])  # norms, biases
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters())
    probe = zoo_core.build_model("zoonet_s", 5, "linear_probe")
    opt = create_optimizer(probe, Recipe(), 0.1)  # frozen parameters stay out
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {
        id(p) for p in probe.head.parameters()}

    _, res = finetune("zoonet_s", digits, strategy="finetune", epochs=3, batch_size=8,
                      recipe={"warmup_epochs": 1, "smoothing": 0.1, "mixup": 0.2,
                              "ema_decay": 0.9}, **QUIET)
    lrs = [m.lr for m in res.history]
    assert lrs[0] < lrs[1]  # warmup, then cosine
    assert "Mixup" in res.path


def test_lp_ft_trains_the_head_first_then_everything(digits):
    from zoo_core.train._setup import UnusedArgumentWarning

    # issue 20: --lp-epochs under the default lbfgs solver is unused, and says so
    with pytest.warns(UnusedArgumentWarning, match="--lp-epochs 5 is unused.*--probe-solver sgd"):
        model, res = finetune("zoonet_s", digits, strategy="lp_ft", epochs=2, lp_epochs=5,
                              batch_size=8, **QUIET)
    phase = res.extra["lp_phase"]
    assert phase["solver"] == "lbfgs" and phase["cached"] and 0 <= phase["val_acc"] <= 1
    ref = zoo_core.build_model("zoonet_s", 5, "linear_probe")
    moved = [k for k, v in ref.state_dict().items()
             if not k.startswith("head.") and not torch.equal(model.state_dict()[k], v)]
    assert moved  # phase 2 trained the backbone
    assert all(p.requires_grad for p in model.parameters())


def test_keep_and_early_stop(tmp_path, digits):
    out = tmp_path / "run"
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=8, lr=3.0,
                      early_stop=1, keep=2, out=out, **SGD, **QUIET)
    stopped = res.extra["stopped_early"]
    assert stopped is not None and len(res.history) == stopped < 8
    files = sorted(p.name for p in (out / "checkpoint").glob("epoch-*.safetensors"))
    best2 = sorted(sorted(res.history, key=lambda m: (-m.val_acc, m.epoch))[:2],
                   key=lambda m: m.epoch)
    expect = {f"epoch-{m.epoch:04d}.safetensors" for m in best2}
    expect.add(f"epoch-{stopped:04d}.safetensors")
    assert set(files) == expect
    with pytest.raises(zoo_core.InvalidArgumentError, match="stopped early"):
        finetune("zoonet_s", digits, strategy="linear_probe", epochs=8, lr=3.0,
                 early_stop=1, keep=2, out=out, resume=True, **SGD, **QUIET)


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, digits, monkeypatch):
    import errno

    from zoo_core.train import _checkpoint as checkpoint

    out = tmp_path / "run"
    real = checkpoint._atomic_save_tensors

    def save(path, tensors, metadata=None):
        if path.name == "epoch-0002.safetensors":
            real(path.with_name(".partial"), tensors, metadata)  # some bytes hit the disk
            os.unlink(path.with_name(".partial"))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, tensors, metadata)

    monkeypatch.setattr(checkpoint, "_atomic_save_tensors", save)
    with pytest.raises(checkpoint.CheckpointWriteError,
                       match="epoch 2.*No space left.*epoch 1\\) is intact.*--resume"):
        finetune("zoonet_s", digits, strategy="linear_probe", epochs=3, out=out, **SGD,
                 **QUIET)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1
    assert [p.name for p in (out / "checkpoint").iterdir() if p.suffix == ".safetensors"] == [
        "epoch-0001.safetensors"]
    monkeypatch.setattr(checkpoint, "_atomic_save_tensors", real)
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=3, out=out,
                      resume=True, **SGD, **QUIET)
    assert res.resumed_from_epoch == 1 and len(res.history) == 3


def test_ctrl_c_says_how_to_resume(tmp_path, digits, monkeypatch, capsys):
    from zoo_core.train._trainer import _Trainer

    real = _Trainer.train_epoch

    def interrupt(self, opt, epoch, epochs, **kw):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, opt, epoch, epochs, **kw)

    monkeypatch.setattr(_Trainer, "train_epoch", interrupt)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune("zoonet_s", digits, strategy="linear_probe", epochs=3, out=out, **SGD,
                 **QUIET)
    err = capsys.readouterr().err
    assert "interrupted during epoch 2" in err and f"zoo finetune --resume {out}" in err
    assert "--resume" in err and "epoch 1" in err
    assert (out / "curves.png").is_file()  # drawn after epoch 1 already


def test_tensorboard_logging(tmp_path, digits):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    finetune("zoonet_s", digits, strategy="linear_probe", epochs=2, out=out,
             log_with="tensorboard", **QUIET)
    events = list(out.rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_solved_probe_is_the_logistic_regression_sklearn_finds():
    """The solver's objective is scikit-learn's: with the C it chose, sklearn's
    LogisticRegression (lbfgs) predicts the same labels on new points."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from zoo_core.train._probe import solve_head

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1.5, (4, 12))
    x = np.concatenate([c + rng.normal(0, 1.0, (15, 12)) for c in centers]) * 5 + 3
    y = np.repeat(np.arange(4), 15)
    head = torch.nn.Linear(12, 5)  # one class never seen in training
    info = solve_head(head, torch.tensor(x, dtype=torch.float32), torch.tensor(y), seed=0)
    assert info["solved"] and info["folds"] == 5 and info["C"] > 0
    mean, std = x.mean(0), x.std(0)
    ref = LogisticRegression(C=info["C"], max_iter=5000).fit((x - mean) / std, y)
    new = np.concatenate([c + rng.normal(0, 1.0, (50, 12)) for c in centers]) * 5 + 3
    with torch.no_grad():
        ours = head(torch.tensor(new, dtype=torch.float32)).argmax(1).numpy()
    agree = (ours == ref.predict((new - mean) / std)).mean()
    assert agree >= 0.98 and 4 not in ours
    train_acc = (head(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy() == y).mean()
    assert train_acc >= ref.score((x - mean) / std, y) - 0.02


def test_linear_probe_is_solved_by_default(digits):
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", **QUIET)
    assert res.extra["probe"]["solved"] and len(res.history) == 1
    assert "logistic regression" in res.path
    assert res.history[0].train_acc > 0.6  # chance is 0.2; the C is cross-validated


def test_ctrl_c_while_saving_names_the_checkpoint_that_was_committed(tmp_path, digits,
                                                                     monkeypatch, capsys):
    """A Ctrl-C while epoch 2's checkpoint is written leaves epoch 1's: the message says
    so (it said "the checkpoint of epoch 2", which state.json did not hold)."""
    from zoo_core.train import _checkpoint

    real = _checkpoint._atomic_save_tensors

    def interrupt(path, tensors, **kw):
        if "epoch-0002" in str(path):
            raise KeyboardInterrupt
        return real(path, tensors, **kw)

    monkeypatch.setattr(_checkpoint, "_atomic_save_tensors", interrupt)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune("zoonet_s", digits, strategy="linear_probe", epochs=3, out=out, **SGD,
                 **QUIET)
    err = capsys.readouterr().err
    assert "interrupted while saving epoch 2" in err
    assert f"the last checkpoint (epoch 1) is in {out / 'checkpoint'}" in err
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1
