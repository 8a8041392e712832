"""zoo eval --tta flip and worst.png (the most confident mistakes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

import zoo_core
from zoo_core.cli.evaluate import _batches, evaluate
from zoo_core.train import finetune

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weak_run(tmp_path_factory, digits):
    """A barely trained probe: it makes mistakes, some of them confident."""
    out = tmp_path_factory.mktemp("weak") / "run"
    finetune("zoonet_s", digits, strategy="linear_probe", probe_solver="sgd", epochs=1,
             lr=0.05, out=out, progress=False, verbose=False, threads=1)
    return out


@pytest.mark.slow
def test_worst_lists_the_most_confident_mistakes(weak_run, tmp_path):
    full = evaluate(str(weak_run), out=tmp_path / "all", worst=10_000)
    mistakes = full["worst"]
    wrong = full["num_images"] - round(full["accuracy"] * full["num_images"])
    assert len(mistakes) == wrong > 4  # every mistake, none right
    assert all(m["true"] != m["predicted"] for m in mistakes)
    conf = [m["confidence"] for m in mistakes]
    assert conf == sorted(conf, reverse=True) and 0 < conf[-1] <= conf[0] <= 1
    top = evaluate(str(weak_run), out=tmp_path / "top", worst=4)
    assert top["worst"] == mistakes[:4]
    png = tmp_path / "top" / "worst.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "top" / "metrics.json").read_text())["worst"] == \
        mistakes[:4]
    none = evaluate(str(weak_run), out=tmp_path / "none", worst=0)
    assert none["worst"] == [] and not (tmp_path / "none" / "worst.png").exists()


def test_flip_tta_averages_an_image_and_its_mirror(weak_run, tmp_path):
    """With flip TTA an image and its mirror get the same probabilities (without it they
    differ), and each equals the softmax of the mean of the two logits."""
    split = json.loads((weak_run / "split.json").read_text())
    root = split["root"]
    rel, label = split["val"][0]
    data = tmp_path / "mirrored" / "val" / label
    data.mkdir(parents=True)
    img = Image.open(os.path.join(root, rel)).convert("RGB")
    img.save(data / "a.png")
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(data / "b.png")
    net = zoo_core.build_model(str(weak_run / "best"))
    net.eval()
    paths = [str(data / "a.png"), str(data / "b.png")]
    (_, plain), = _batches(net, paths, 8)
    (_, flip), = _batches(net, paths, 8, tta="flip")
    assert not torch.allclose(plain[0], plain[1], atol=1e-4)
    assert torch.allclose(flip[0], flip[1], atol=1e-5)
    assert torch.allclose(flip[0], (plain[0].log() + plain[1].log()).div(2).softmax(0),
                          atol=1e-4)  # log-softmax differs from logits by a constant
    res = evaluate(str(weak_run / "best"), tmp_path / "mirrored", tta="flip", worst=0)
    assert res["tta"] == "flip" and res["num_images"] == 2
    with pytest.raises(zoo_core.InvalidArgumentError, match="--tta must be one of"):
        evaluate(str(weak_run), tta="rotate")
    with pytest.raises(zoo_core.InvalidArgumentError, match="--worst must be"):
        evaluate(str(weak_run), worst=-1)


@pytest.mark.slow
def test_zoo_eval_cli(weak_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(weak_run, run)
    cmd = [sys.executable, "-m", "zoo_core.cli", "eval", str(run), "--tta", "flip",
           "--worst", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 most confident in worst.png" in proc.stdout
    assert (run / "eval" / "worst.png").is_file()
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["tta"] == "flip" and len(metrics["worst"]) == 3
    proc = subprocess.run(cmd[:-1] + ["-2"], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)
    assert proc.returncode == 2
    assert "zoo: error: --worst must be an integer >= 0, got -2" in proc.stderr
