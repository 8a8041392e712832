"""``zoo export`` / ``export_model``: the file loads back the way a deployment loads it and
computes what the model computes; its JSON spells out timm's preprocessing; bad inputs get
one clear error and leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo_core
from zoo_core.errors import ExportError, InvalidArgumentError
from zoo_core.export import ATOL, RTOL, export_model

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = ["five", "six", "seven"]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A saved zoonet_s folder with 3 named classes and a fresh (random) head."""
    torch.manual_seed(0)
    net = zoo_core.build_model("zoonet_s", num_classes=3, label_names=LABELS)
    return zoo_core.save_pretrained(net, tmp_path / "saved")


def _eager(model: str, x: torch.Tensor) -> np.ndarray:
    net = zoo_core.build_model(model, device=torch.device("cpu")).eval()
    with torch.no_grad():
        return net(x).double().numpy()


@pytest.mark.slow
def test_zoo_export_onnx_runs_in_onnxruntime(saved: Path, tmp_path: Path):
    """The real command on a run folder; onnxruntime on a batch size never exported."""
    import onnxruntime as ort

    run = tmp_path / "run"
    run.mkdir()
    saved.rename(run / "best")
    (run / "run.json").write_text("{}", encoding="utf-8")
    out = tmp_path / "deploy" / "model.onnx"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "zoo_core.cli", "export", str(run),
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "the run's best model" in done.stdout and "parity: max |exported - eager|" \
        in done.stdout
    meta = json.loads(out.with_name("model.onnx.json").read_text(encoding="utf-8"))
    assert meta["labels"] == LABELS and meta["format"] == "onnx"
    assert meta["parity"]["max_abs_diff"] <= ATOL
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *meta["preprocessing"]["input_size"])
    got = session.run(["logits"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, _eager(str(run / "best"), x), atol=ATOL, rtol=RTOL)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx", "model.onnx.json"]


@pytest.mark.parametrize("fmt", ["torchscript",
                                 pytest.param("exported-program", marks=pytest.mark.slow)])
def test_torch_formats_load_back_and_match(saved: Path, tmp_path: Path, fmt: str):
    out = tmp_path / ("m.pt" if fmt == "torchscript" else "m.pt2")
    result = export_model(str(saved), out, fmt)
    assert result.path == out and result.max_abs_diff <= ATOL
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load: deprecated (FutureWarning)
        loaded = (torch.jit.load(str(out)) if fmt == "torchscript"
                  else torch.export.load(str(out)).module())
    x = torch.randn(7, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).double().numpy(), _eager(str(saved), x),
                                   atol=ATOL, rtol=RTOL)


def test_metadata_reproduces_timms_eval_transform(saved: Path, tmp_path: Path):
    """A deployment that follows the JSON's steps by hand feeds the model what zoo eval
    feeds it (timm's eval transform)."""
    from PIL import Image

    from zoo_core.data._data import make_transforms

    meta = export_model(str(saved), tmp_path / "m.pt", "torchscript").metadata
    pre = meta["preprocessing"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 60, 3), np.uint8))
    w, h = image.size
    short = pre["resize_shorter_side"]
    size = (short, int(h * short / w)) if w < h else (int(w * short / h), short)
    resized = image.convert(pre["color"]).resize(size, {"bilinear": Image.BILINEAR,
                                                        "bicubic": Image.BICUBIC}
                                                 [pre["interpolation"]])
    c, th, tw = pre["input_size"]
    left, top = (resized.size[0] - tw) // 2, (resized.size[1] - th) // 2
    crop = np.asarray(resized.crop((left, top, left + tw, top + th)), np.float32) / 255
    by_hand = (crop - np.array(pre["mean"])) / np.array(pre["std"])
    net = zoo_core.build_model(str(saved))
    timm_tf = make_transforms(net)[1](image).numpy().transpose(1, 2, 0)
    assert by_hand.shape == timm_tf.shape == (th, tw, c)
    np.testing.assert_allclose(by_hand, timm_tf, atol=0.02)  # PIL vs tensor resize
    assert meta["labels"] == LABELS and meta["output"]["num_classes"] == 3


def test_existing_output_is_refused_without_force(saved: Path, tmp_path: Path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(InvalidArgumentError, match=r"m\.pt exists; pass force=True"):
        export_model(str(saved), out, "torchscript")
    assert out.read_bytes() == b"keep me"
    export_model(str(saved), out, "torchscript", force=True)
    assert out.read_bytes() != b"keep me" and (tmp_path / "m.pt.json").is_file()


def test_unknown_format_and_directory_out(saved: Path, tmp_path: Path):
    with pytest.raises(InvalidArgumentError, match="unknown export format 'tflite': use one "
                                                   "of onnx, torchscript, exported-program"):
        export_model(str(saved), tmp_path / "m.tflite", "tflite")
    with pytest.raises(InvalidArgumentError, match="is a directory: give the file"):
        export_model(str(saved), tmp_path, "torchscript")


def test_onnx_without_onnxruntime_says_what_to_install(saved, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(ExportError, match=r"pip install 'zoo-core\[export\]'"):
        export_model(str(saved), tmp_path / "m.onnx")
    assert list(tmp_path.glob("m.onnx*")) == []


VALUE_DEPENDENT = '''
import zoo_core
import torch.nn as nn

@zoo_core.hookimpl
def register_backbones(register):
    register(zoo_core.BackboneSpec(
        name="shifty", builder="shifty_zoo:make", head="head", stages=("body",),
        data_config=zoo_core.DataConfig(input_size=(3, 8, 8))))

class Shifty(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.body(x)) + float(x.mean())  # a Python float: not traceable

def make(num_classes):
    return Shifty(num_classes)
'''


def test_untraceable_model_is_refused_and_nothing_is_written(make_dist, tmp_path):
    make_dist("shifty-zoo", "shifty_zoo", VALUE_DEPENDENT)
    net = zoo_core.build_model("shifty", num_classes=2, weights=None)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    old = tmp_path / "m.pt"
    old.write_bytes(b"the previous export")
    # torch.jit.trace bakes float(x.mean()) in as a constant: only the parity check sees it
    with pytest.raises(ExportError, match="does not compute what the model computes: max "
                                          r"\|exported - eager\| = .*nothing was written"):
        export_model(net, old, "torchscript", force=True)
    assert old.read_bytes() == b"the previous export"  # replaced only after the check
    with pytest.raises(ExportError, match="cannot be exported as exported-program "
                                          r"\(torch.export: .*try another --format"):
        export_model(net, tmp_path / "m.pt2", "exported-program")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_cli_errors_are_one_line(saved: Path, tmp_path: Path, capsys):
    from zoo_core.cli.main import main

    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    assert main(["export", str(saved), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"zoo: error: {out} exists; pass --force to replace it\n"
    with pytest.raises(SystemExit):
        main(["export", str(saved), "--format", "tflite", "--out", str(out)])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_onnx_falls_back_to_the_torchscript_based_exporter(saved, tmp_path, monkeypatch):
    """A graph the dynamo exporter fails on still exports, and the record says how."""
    import onnxruntime as ort

    real = torch.onnx.export

    def dynamo_fails(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("unsupported op in this graph\nmore detail")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    out = tmp_path / "m.onnx"
    result = export_model(str(saved), out, "onnx")
    assert result.exporter.startswith("torch.onnx TorchScript-based (the dynamo exporter "
                                      "failed: RuntimeError: unsupported op in this graph)")
    assert json.loads((tmp_path / "m.onnx.json").read_text())["exporter"] == result.exporter
    x = torch.randn(4, 3, 32, 32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, _eager(str(saved), x), atol=ATOL, rtol=RTOL)


def test_a_built_model_keeps_its_mode_and_a_plain_module_is_refused(tmp_path):
    net = zoo_core.build_model("zoonet_s", num_classes=2)
    net.train()
    result = export_model(net, tmp_path / "m.pt", "torchscript")
    assert net.training and result.metadata["source"] == "zoonet_s"
    with pytest.raises(InvalidArgumentError, match="takes a zoo_core model"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "x.pt", "torchscript")


def test_export_from_the_hub(hub_env, saved, tmp_path):
    """hf-hub:org/repo is built from the (local) Hub like any zoo_core source."""
    repo = hub_env.repo_id("exported")
    zoo_core.push_to_hub(zoo_core.build_model(str(saved)), repo)
    result = export_model(f"hf-hub:{repo}", tmp_path / "m.pt2", "exported-program")
    assert result.metadata["labels"] == LABELS
    assert result.metadata["source"] == f"hf-hub:{repo}"


FIXED_BATCH = VALUE_DEPENDENT.replace("shifty", "fixed").replace(
    "return self.head(self.body(x)) + float(x.mean())  # a Python float: not traceable",
    "return self.head(self.body(x).reshape(int(x.shape[0]), -1))  # batch as a constant")
TUPLE_OUT = VALUE_DEPENDENT.replace("shifty", "pair").replace(
    "return self.head(self.body(x)) + float(x.mean())  # a Python float: not traceable",
    "return self.head(self.body(x)), x")
BROKEN = VALUE_DEPENDENT.replace("shifty", "broken").replace(
    "return self.head(self.body(x)) + float(x.mean())  # a Python float: not traceable",
    "return self.head(x)")


def test_models_the_parity_check_or_the_exporter_refuse(make_dist, tmp_path):
    make_dist("fixed-zoo", "fixed_zoo", FIXED_BATCH)
    make_dist("pair-zoo", "pair_zoo", TUPLE_OUT)
    make_dist("broken-zoo", "broken_zoo", BROKEN)
    out = tmp_path / "out"
    fixed = zoo_core.build_model("fixed", num_classes=2, weights=None)
    # traced with a batch of 2 baked in: the check's batch of 3 cannot run
    with pytest.raises(ExportError, match=r"cannot run a batch of 3 .*is the batch size "
                                          "fixed in its graph"):
        export_model(fixed, out / "f.pt", "torchscript")
    with pytest.raises(ExportError, match="cannot be exported as exported-program"):
        export_model(fixed, out / "f.pt2", "exported-program")
    pair = zoo_core.build_model("pair", num_classes=2, weights=None)
    with pytest.raises(ExportError, match="returns tuple, not a logits tensor"):
        export_model(pair, out / "p.pt", "torchscript")
    broken = zoo_core.build_model("broken", num_classes=2, weights=None)
    with pytest.raises(ExportError, match="fails on a batch of 3 random 3x8x8 inputs before "
                                          "any export"):
        export_model(broken, out / "b.pt", "torchscript")
    assert not out.exists() or list(out.iterdir()) == []
