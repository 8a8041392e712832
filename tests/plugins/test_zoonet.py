"""zoonet: the project's own backbones, their shipped weights (glyphs, digits04), the digits."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from torch import nn

import zoo_core_plugins.zoonet as zoonet
from zoo_core import BackboneSpec
from zoo_core_plugins.zoonet import digits, glyphs

SPECS = {s.name: s for s in zoonet.backbone_specs()}
NAMES = ["zoonet_s", "zoonet_m"]
TAGS = ["glyphs", "digits04"]
REPO = Path(__file__).resolve().parents[2]


def _build(spec: BackboneSpec, num_classes: int) -> nn.Module:
    mod, _, fn = spec.builder.partition(":")
    return getattr(importlib.import_module(mod), fn)(num_classes=num_classes)


def _weights_path(spec: BackboneSpec, tag: str = "default"):
    w = spec.weights_tag(tag)
    prefix = "pkg:zoo_core_plugins/"
    assert w is not None and w.source.startswith(prefix)
    return importlib.resources.files("zoo_core_plugins").joinpath(w.source[len(prefix) :])


def test_hook_registers_both_specs():
    got = []
    zoonet.register_backbones(got.append)
    assert [s.name for s in got] == NAMES
    for s in got:
        assert isinstance(s, BackboneSpec)
        assert s.head == "head" and s.stages == ("stages.0", "stages.1", "stages.2")
        assert s.default_weights == "glyphs"
        w = s.weights_tag("default")
        assert w.tag == "glyphs" and w.num_classes == len(glyphs.PRETRAIN_CLASSES) == 546
        assert w.label_names == zoonet.GLYPH_LABELS == glyphs.PRETRAIN_CLASSES
        assert len(w.sha256) == 64 and int(w.sha256, 16) >= 0
        assert s.data_config.input_size == (3, 32, 32)
        assert s.data_config.first_conv == "stem.0"
        assert s.data_config.mean == (zoonet.GLYPHS_MEAN,) * 3
        assert s.data_config.std == (zoonet.GLYPHS_STD,) * 3
        old = s.weights_tag("digits04")  # the older tag stays loadable, with its own stats
        assert old.num_classes == 5 and old.label_names == ("0", "1", "2", "3", "4")
        assert old.data_config.mean == (zoonet.DIGITS_MEAN,) * 3


def test_entry_point_declared():
    eps = importlib.metadata.entry_points(group="zoo_core")
    assert {ep.name: ep.value for ep in eps}.get("zoonet") == "zoo_core_plugins.zoonet"


def test_import_does_not_import_torch():
    code = (
        "import sys, zoo_core_plugins.zoonet as z; "
        "specs = []; z.register_backbones(specs.append); assert len(specs) == 2; "
        "heavy = [m for m in ('torch', 'timm', 'torchvision', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_builder_layout_and_shapes(name):
    spec = SPECS[name]
    model = _build(spec, num_classes=7)
    head = model.get_submodule(spec.head)
    assert isinstance(head, nn.Linear) and head.out_features == 7
    assert head.in_features == model.num_features
    # the stem folds into the first stage: it runs before it
    stages = [model.get_submodule(p) for p in ("stem", *spec.stages)]
    first_conv = model.get_submodule(spec.data_config.first_conv)
    assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == 3
    # every parameter is in exactly one stage or the head (so partial:K covers the backbone)
    owned = [id(p) for m in [*stages, head] for p in m.parameters()]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())
    # stages are ordered input -> output: feed each stage the previous one's output
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        h = x
        for s in stages:
            h = s(h)
        assert torch.equal(h, model.forward_features(x))
        assert h.shape == (2, model.num_features, 4, 4)
        assert model(x).shape == (2, 7)
        assert model.forward_head(h, pre_logits=True).shape == (2, model.num_features)
        assert model(torch.randn(1, 3, 48, 40)).shape == (1, 7)  # any size, global pooling
    model.reset_classifier(3)
    assert model.get_submodule("head").out_features == 3
    assert torch.count_nonzero(model.head.bias) == 0


def test_param_counts():
    counts = {n: sum(p.numel() for p in _build(SPECS[n], 10).parameters()) for n in NAMES}
    assert 50_000 <= counts["zoonet_s"] <= 150_000
    assert 300_000 <= counts["zoonet_m"] <= 600_000


def test_init_like_timm():
    model = _build(SPECS["zoonet_s"], 10)
    bn = model.get_submodule("stem.1")
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(model.head.bias == 0) and model.head.weight.std() < 0.02


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_pinned_and_load_strictly(name, tag):
    from safetensors import safe_open
    from safetensors.torch import load_file

    spec = SPECS[name]
    w = spec.weights_tag(tag)
    path = _weights_path(spec, tag)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == w.sha256
    model = _build(spec, num_classes=w.num_classes)
    model.load_state_dict(load_file(str(path)), strict=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["arch"] == name and meta["tag"] == tag
    assert json.loads(meta["label_names"]) == list(w.label_names)
    assert float(meta["source_val_accuracy"]) >= (0.9 if tag == "glyphs" else 0.97)
    if tag == "glyphs":  # the data config is the pretraining pixels' statistics
        assert meta["license"] == zoonet.GLYPHS_WEIGHTS_LICENSE
        assert json.loads(meta["mean"]) == list(spec.data_config.mean)
        assert json.loads(meta["std"]) == list(spec.data_config.std)


def test_registry_toml_pins_match_the_plugin():
    """registry.toml mirrors the plugin's pins: same sources, sha256 and class counts."""
    table = tomllib.loads((REPO / "registry.toml").read_text())["weights"]
    for name in NAMES:
        for tag in TAGS:
            w = SPECS[name].weights_tag(tag)
            pin = table[name][tag]
            assert pin["source"] == w.source == zoonet.weights_source(name, tag)
            assert pin["sha256"] == w.sha256 and pin["num_classes"] == w.num_classes
    assert zoonet.weights_source("zoonet_s").endswith("zoonet_s-glyphs.safetensors")


def test_zoonet_s_weights_are_small():
    assert _weights_path(SPECS["zoonet_s"], "glyphs").stat().st_size < 1_000_000


def _normalised(rgb: np.ndarray, config) -> torch.Tensor:
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return (x - mean) / std


def _source_val_tensors():
    images, labels = digits.source_train_val()["val"]
    x = _normalised(digits.to_rgb_array(images), zoonet.DIGITS04_DATA_CONFIG)
    return x, torch.from_numpy(np.asarray(labels))


@pytest.mark.parametrize("name", NAMES)
def test_digits04_weights_classify_source_val(name):
    from safetensors.torch import load_file

    spec = SPECS[name]
    model = _build(spec, num_classes=5)
    x, y = _source_val_tensors()
    model.eval()
    with torch.no_grad():
        random_acc = (model(x).argmax(1) == y).float().mean().item()
        model.load_state_dict(load_file(str(_weights_path(spec, "digits04"))), strict=True)
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert len(y) == 180
    assert acc >= 0.95, acc
    assert random_acc < 0.6


@pytest.mark.parametrize("name", NAMES)
def test_glyphs_weights_classify_held_back_renders(name):
    """The validation renders of the pretraining script (stream 1), for every 8th class."""
    from safetensors.torch import load_file

    spec = SPECS[name]
    classes = glyphs.PRETRAIN_CLASSES[::8]
    images, _ = glyphs.render_set(classes, 2, seed=0, stream=1)
    y = torch.tensor([glyphs.PRETRAIN_CLASSES.index(c) for c in classes]).repeat_interleave(2)
    x = _normalised(glyphs.to_rgb_array(images), spec.data_config)
    model = _build(spec, num_classes=546)
    model.load_state_dict(load_file(str(_weights_path(spec, "glyphs"))), strict=True)
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.3, acc  # chance: 1/546 (zoonet_s 0.72, zoonet_m 0.40 on all val renders)


def test_glyph_pixel_stats_match_the_data_config():
    """A sample of the pretraining pixels; the script checks all of them to 1e-4."""
    images, _ = glyphs.render_set(glyphs.PRETRAIN_CLASSES[::6], 16, seed=0)
    mean, std = glyphs.channel_stats(images)
    assert abs(mean - zoonet.GLYPHS_MEAN) < 0.02 and abs(std - zoonet.GLYPHS_STD) < 0.02


@pytest.mark.slow
def test_pretrain_script_is_byte_reproducible(tmp_path):
    """Two short runs of scripts/pretrain_zoonet.py write byte-identical files."""
    argv = [
        sys.executable, str(REPO / "scripts" / "pretrain_zoonet.py"), "--models", "zoonet_s",
        "--per-class", "2", "--val-per-class", "1", "--epochs", "0.5", "--min-val-acc", "0",
        "--allow-stats-mismatch",
    ]  # fmt: skip
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        subprocess.run([*argv, "--out-dir", str(out)], check=True, capture_output=True)
        digests.append(hashlib.sha256((out / "zoonet_s-glyphs.safetensors").read_bytes()).digest())
    assert digests[0] == digests[1]


def test_pretrain_elastic_warp_is_seeded_smooth_and_bounded():
    """The pretraining script's elastic warp: identity at alpha 0, same generator seed ->
    same images, and a bounded displacement (a shifted bright pixel stays near its place)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("pretrain_zoonet",
                                                  REPO / "scripts" / "pretrain_zoonet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, 14:18, 14:18] = 1.0
    assert torch.equal(mod.elastic(x, torch.Generator().manual_seed(0), 0.0), x)
    a = mod.elastic(x, torch.Generator().manual_seed(1), 2.5)
    b = mod.elastic(x, torch.Generator().manual_seed(1), 2.5)
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    lit = a[:, 0] > 0.05
    assert lit[:, :10].sum() == 0 and lit[:, 22:].sum() == 0  # moved by < 3 pixels + blur
    assert lit[:, :, :10].sum() == 0 and lit[:, :, 22:].sum() == 0


def test_source_and_target_are_disjoint():
    split = digits.source_target_split()
    _, ls, idx_s = split["source"]
    _, lt, idx_t = split["target"]
    assert set(ls.tolist()) == {0, 1, 2, 3, 4} and set(lt.tolist()) == {5, 6, 7, 8, 9}
    assert not set(idx_s.tolist()) & set(idx_t.tolist())
    assert len(idx_s) + len(idx_t) == 1797
    tv = digits.source_train_val()
    assert len(tv["train"][1]) + len(tv["val"][1]) == len(idx_s)


def _tree(root):
    return sorted(
        (str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    )


def test_export_imagefolder_counts_pixels_and_idempotent(tmp_path):
    from PIL import Image

    images, labels = digits.load_digits_arrays()
    out = tmp_path / "digits"
    root = digits.export_imagefolder(out, per_class=3, seed=0)
    assert root == out
    assert sorted(p.name for p in (out / "train").iterdir()) == ["5", "6", "7", "8", "9"]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["5", "6", "7", "8", "9"]
    for c in range(5, 10):
        assert len(list((out / "train" / str(c)).glob("*.png"))) == 3
        n_val = len(list((out / "val" / str(c)).glob("*.png")))
        assert n_val == round(int((labels == c).sum()) * 0.2)
    # pixels: RGB 32x32, exactly the arrays the pretraining script uses, right label
    f = sorted((out / "train" / "7").glob("*.png"))[0]
    idx = int(f.stem.split("_")[1])
    assert labels[idx] == 7
    with Image.open(f) as im:
        assert im.mode == "RGB" and im.size == (32, 32)
        assert np.array_equal(np.asarray(im), digits.to_rgb_array(images[idx : idx + 1])[0])
    # no image in both train and val
    tr = {p.name for p in (out / "train").rglob("*.png")}
    va = {p.name for p in (out / "val").rglob("*.png")}
    assert not tr & va

    before = _tree(out)
    digits.export_imagefolder(out, per_class=3, seed=0)
    assert _tree(out) == before  # same parameters: untouched

    # other parameters: rewritten whole; the val split does not depend on per_class
    digits.export_imagefolder(out, per_class=5, seed=0)
    assert all(len(list((out / "train" / str(c)).iterdir())) == 5 for c in range(5, 10))
    assert {p.name for p in (out / "val").rglob("*.png")} == va
    marker = json.loads((out / digits.MARKER).read_text())
    assert marker["per_class"] == 5 and marker["classes"] == [5, 6, 7, 8, 9]
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # no temp dirs left


def test_export_refuses_foreign_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        digits.export_imagefolder(tmp_path, per_class=1)
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_export_single_split(tmp_path):
    out = digits.export_imagefolder(tmp_path / "d", classes=[0, 1], split=("all",), per_class=2)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["all"]
    assert sorted(p.name for p in (out / "all").iterdir()) == ["0", "1"]
    assert all(len(list((out / "all" / c).iterdir())) == 2 for c in ("0", "1"))
