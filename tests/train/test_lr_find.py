"""The LR range test: fastai's suggestion on known curves, the run's own param groups,
model/optimizer/RNG restored (a --lr auto run trains exactly as --lr <suggestion>), the
plot and run.json record, and clear errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

import zoo_core
from zoo_core.train import finetune
from zoo_core.train._lr_find import suggest, valley
from zoo_core.train._lr_find_run import lr_find
from zoo_core.train._trainer import _Trainer

QUIET = {"progress": False, "verbose": False, "threads": 1}
PROBE = {"strategy": "linear_probe", "probe_solver": "sgd", **QUIET}


def test_suggestions_on_a_known_curve():
    # flat, then a descent from 1e-4 to 1e-1, then divergence
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]

    def loss(lr):
        x = math.log10(lr)
        return 2.0 if x < -4 else (2.0 - 0.5 * (x + 4) if x < -1 else 0.5 + 3 * (x + 1) ** 2)

    losses = [loss(x) for x in lrs]
    lr, steep, low = suggest(lrs, losses)
    assert 1e-4 < lr < 1e-1 and 1e-4 < steep < 1e-1
    assert low == pytest.approx(lrs[min(range(5, 99), key=losses.__getitem__)] / 10)
    assert valley([3, 2, 1, 5]) == 0 and valley([5, 4, 3, 2, 1, 0, 9]) == 2


@pytest.mark.slow
def test_auto_trains_exactly_like_the_suggested_rate(tmp_path, digits):
    """The test runs on the real optimizer, then everything is put back: a --lr auto run
    and a run with the suggestion typed in reach the same history."""
    out = tmp_path / "auto"
    _, auto = finetune("zoonet_s", digits, lr="auto", epochs=2, out=out, **PROBE)
    record = json.loads((out / "run.json").read_text())
    found = record["lr_find"]
    assert found["suggestion"] == record["hyperparameters"]["lr"] == auto.extra["lr"]
    assert record["arguments"]["lr"] == "auto"
    assert found["steps"] >= 10 and (out / "lr_find.png").stat().st_size > 1000
    _, typed = finetune("zoonet_s", digits, lr=found["suggestion"], epochs=2, **PROBE)
    assert [(h.train_loss, h.val_acc) for h in auto.history] == \
        [(h.train_loss, h.val_acc) for h in typed.history]
    # a resumed --lr auto run keeps the checkpoint's rate and the record of the test
    _, more = finetune(resume=out, epochs=3, **QUIET)
    assert more.extra["lr"] == found["suggestion"] and len(more.history) == 3
    assert json.loads((out / "run.json").read_text())["lr_find"] == found


def test_the_strategys_param_groups_and_layer_decay(digits, monkeypatch):
    seen: list[list[float]] = []
    original = _Trainer._micro_step

    def spy(self, opt, *a, **kw):
        seen.append([g["lr"] for g in opt.param_groups])
        return original(self, opt, *a, **kw)

    monkeypatch.setattr(_Trainer, "_micro_step", spy)
    res = lr_find("zoonet_s", digits, strategy="finetune", num_iter=12,
                  recipe={"layer_decay": 0.5}, **QUIET)
    assert len(seen) == 12 and res.lr > 0
    first, last = seen[0], seen[-1]
    assert max(first) == pytest.approx(1e-7) and max(last) == pytest.approx(10.0)
    scales = sorted({round(v / max(first), 6) for v in first})
    assert len(scales) > 2 and scales[-1] == 1.0 and scales[0] < 0.2  # layer decay held


def test_bad_inputs(digits, tmp_path):
    with pytest.raises(zoo_core.InvalidArgumentError, match="--num-iter"):
        lr_find("zoonet_s", digits, num_iter=3, **PROBE)
    with pytest.raises(zoo_core.InvalidArgumentError, match="--start-lr"):
        lr_find("zoonet_s", digits, start_lr=1.0, end_lr=0.1, **PROBE)
    with pytest.raises(zoo_core.InvalidArgumentError, match="--probe-solver sgd"):
        lr_find("zoonet_s", digits, **{**PROBE, "probe_solver": "lbfgs"})
    with pytest.raises(zoo_core.InvalidArgumentError, match="lower --start-lr"):
        lr_find("zoonet_s", digits, start_lr=1e6, end_lr=1e12, num_iter=10,
                strategy="finetune", **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="takes no lr"):
        lr_find("zoonet_s", digits, lr=0.1, **PROBE)
    with pytest.raises(zoo_core.InvalidArgumentError, match="--lr"):
        finetune("zoonet_s", digits, lr="fast", **PROBE)


def _zoo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "zoo_core.cli", *args], capture_output=True,
                          text=True, env={**os.environ}, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_zoo_lr_find_and_finetune_lr_auto(tmp_path):
    proc = _zoo("lr-find", "--strategy", "finetune", "--num-iter", "20", "--threads", "1",
                "--out", "lrf", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["suggestion"] > 0 and res["steps"] == 20
    saved = json.loads((tmp_path / "lrf" / "lr_find.json").read_text())
    assert len(saved["lrs"]) == len(saved["losses"]) == 20
    assert (tmp_path / "lrf" / "lr_find.png").is_file()
    assert not (tmp_path / "lrf" / "run.json").exists()  # nothing was trained
    proc = _zoo("finetune", "--lr", "soon", cwd=tmp_path)
    assert proc.returncode == 2 and "--lr must be a positive number or 'auto'" in proc.stderr
    proc = _zoo("finetune", "--lr", "auto", "--strategy", "linear_probe", "--probe-solver",
                "sgd", "--epochs", "1", "--threads", "1", "--out", "run", "--no-progress",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lr          auto:" in proc.stdout
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["lr_find"]["suggestion"] == record["hyperparameters"]["lr"]
