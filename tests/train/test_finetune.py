"""zoo_core.finetune: end to end on the embedded digits, cached == naive, auto, resume,
bad data, CLI, Hub push. Small data (zoonet_s, 32x32, tens of images) keeps it fast."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import zoo_core
from zoo_core.cli.finetune import add_cli
from zoo_core.data._data import (
    BadImageWarning,
    DatasetError,
    DatasetNotFoundError,
    DatasetWarning,
    ImageDataset,
    make_transforms,
    scan_image_folder,
)
from zoo_core.train import EXIT_AFTER_EPOCH_ENV, EXIT_CODE, finetune
from zoo_core_plugins.zoonet.digits import export_imagefolder

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"progress": False, "verbose": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A smaller tree without train/val folders: 3 digit classes, 8 images each."""
    src = export_imagefolder(tmp_path_factory.mktemp("s") / "all", classes=(5, 6, 7),
                             per_class=8, split=("all",))
    return src / "all"


def _png(path: Path, mode: str = "RGB", size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (size, size), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        if mode == "P":
            img = img.convert("P")
            img.info["transparency"] = 0
        elif mode != "RGB":
            img = img.convert(mode)
    img.save(path)
    return path


# ----------------------------------------------------------------------------- end to end


def test_end_to_end_embedded_writes_everything(tmp_path):
    out = tmp_path / "run"
    model, res = finetune("zoonet_s", None, strategy="partial:1", epochs=2, per_class=4,
                          out=out, **QUIET)
    assert res.strategy == "partial:1" and res.reason == "chosen by the caller: partial:1"
    assert res.label_names == ("5", "6", "7", "8", "9") and res.num_train == 20
    assert [m.epoch for m in res.history] == [1, 2] and res.best_epoch in (1, 2)
    assert res.best_val_acc == max(m.val_acc for m in res.history) > 0.2
    assert model.zoo.strategy == "partial:1" and not model.training

    doc = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert doc["strategy"] == "partial:1" and doc["best"]["val_acc"] == res.best_val_acc
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                            "seconds", "images_per_s", "val_images"}
    assert rows[0]["val_images"] == str(res.num_val)
    run = json.loads((out / "run.json").read_text())
    hp = run["hyperparameters"]
    assert hp["lr"] == res.extra["lr"] and hp["epochs"] == 2 and hp["seed"] == 0
    assert hp["batch_size"] == 16 and hp["precision"] == "32" and hp["opt"] == "adamw"
    assert run["strategy"] == "partial:1" and run["reason"] == res.reason
    assert len(run["data"]["files_sha256"]) == 64 and run["data"]["num_files"] == 20 + 179
    assert {"torch", "timm", "accelerate", "python"} <= set(run["versions"])
    assert doc["run"] == run  # metrics.json carries the same record
    assert run["data"]["files_sha256"] in (out / "best" / "README.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.plot_png == str(out / "curves.png")

    best = out / "best"
    assert {p.name for p in best.iterdir()} == {"model.safetensors", "config.json",
                                                "README.md"}
    # weight files are output files like the rest: readable where the umask allows
    modes = {p.name: p.stat().st_mode & 0o077 for p in best.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"]
    card = (best / "README.md").read_text()
    assert "## Training run" in card and "| weight_decay | 0.0001 |" in card
    config = json.loads((best / "config.json").read_text())
    assert config["num_classes"] == 5 and config["label_names"] == list(res.label_names)
    if res.best_epoch == 2:  # the final model is the best one
        saved = load_file(best / "model.safetensors")
        assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and (out / "checkpoint" / state["tensors"]).is_file()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_existing_checkpoint_needs_resume_or_overwrite(tmp_path, digits):
    kw = dict(strategy="linear_probe", epochs=1, out=tmp_path, probe_solver="sgd", **QUIET)
    finetune("zoonet_s", digits, **kw)
    with pytest.raises(zoo_core.InvalidArgumentError, match="resume=True"):
        finetune("zoonet_s", digits, **kw)
    _, res = finetune("zoonet_s", digits, overwrite=True, **kw)
    assert res.resumed_from_epoch is None
    with pytest.raises(zoo_core.InvalidArgumentError, match="lr"):
        finetune("zoonet_s", digits, resume=True, lr=0.5, **{**kw, "epochs": 2})
    # a finished run says so instead of training zero epochs; more epochs extend it
    with pytest.raises(zoo_core.InvalidArgumentError, match=r"finished .*--epochs N"):
        finetune("zoonet_s", digits, resume=True, **kw)
    _, res = finetune("zoonet_s", digits, resume=True, **{**kw, "epochs": 2})
    assert res.resumed_from_epoch == 1 and [m.epoch for m in res.history] == [1, 2]
    with pytest.raises(zoo_core.InvalidArgumentError, match="already trained 2 epochs"):
        finetune("zoonet_s", digits, resume=True, **{**kw, "epochs": 1})


def test_resume_on_a_folder_that_is_not_a_run(tmp_path, digits):
    (tmp_path / "photos").mkdir()
    with pytest.raises(zoo_core.InvalidArgumentError, match="--resume: .* not a finetune run"):
        finetune("zoonet_s", digits, strategy="linear_probe", out=tmp_path / "photos",
                 resume=True, **QUIET)
    assert list((tmp_path / "photos").iterdir()) == []


# ----------------------------------------------------------------------------- caching


def test_cached_linear_probe_equals_naive_loop(digits):
    kw = dict(strategy="linear_probe", epochs=3, batch_size=8, seed=3, probe_solver="sgd",
              **QUIET)
    naive, r_naive = finetune("zoonet_s", digits, cache_features=False, **kw)
    cached, r_cached = finetune("zoonet_s", digits, cache_features=True, **kw)
    assert r_cached.feature_cache and not r_naive.feature_cache
    assert "cached" in r_cached.path and "every epoch" in r_naive.path
    for (name, a), b in zip(naive.state_dict().items(), cached.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for ma, mb in zip(r_naive.history, r_cached.history, strict=True):
        assert ma.val_acc == mb.val_acc and abs(ma.train_loss - mb.train_loss) < 1e-5
    # the frozen backbone and its BatchNorm statistics are exactly the pretrained ones
    ref = zoo_core.build_model("zoonet_s", 5, "linear_probe")
    for name, value in ref.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(cached.state_dict()[name], value), name


def test_augment_forces_the_slow_path_and_says_so(digits, capsys):
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=1, progress=False,
                      augment={"hflip": 0.0, "scale": (0.6, 1.0)})
    assert not res.feature_cache and "augmentation" in res.path
    assert "augment=True" in capsys.readouterr().out


# ----------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_after_hard_exit_equals_uninterrupted(tmp_path, digits):
    """Crash (os._exit) after epoch 2's checkpoint, resume: same weights, bit for bit.
    finetune + augmentation, so the RNG state must round-trip through the checkpoint."""
    kw = dict(strategy="finetune", epochs=3, batch_size=8, augment={"hflip": 0.0}, **QUIET)
    script = textwrap.dedent(f"""
        import torch, zoo_core.train as f
        torch.set_num_threads(1)
        f.finetune("zoonet_s", {str(digits)!r}, out={str(tmp_path / 'b')!r}, **{kw!r})
        raise SystemExit("not reached")
    """)
    env = {**os.environ, EXIT_AFTER_EPOCH_ENV: "2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == EXIT_CODE, proc.stderr
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["epoch"] == 2

    whole, r_whole = finetune("zoonet_s", digits, out=tmp_path / "a", **kw)
    resumed, r_res = finetune("zoonet_s", digits, out=tmp_path / "b", resume=True, **kw)
    assert r_res.resumed_from_epoch == 2 and len(r_res.history) == 3
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert [m.val_acc for m in r_whole.history] == [m.val_acc for m in r_res.history]
    rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


# ----------------------------------------------------------------------------- bad data


def test_missing_dir_and_no_images(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        finetune("zoonet_s", tmp_path / "nope", strategy="linear_probe", **QUIET)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no images found under"):
        scan_image_folder(tmp_path / "empty")
    _png(tmp_path / "loose" / "x.png")
    with pytest.raises(DatasetError, match="one sub-folder per class"):
        scan_image_folder(tmp_path / "loose")
    with pytest.raises(DatasetError, match="not a directory"):
        scan_image_folder(tmp_path / "loose" / "x.png")


def test_single_class_is_a_clear_error(tmp_path):
    for i in range(3):
        _png(tmp_path / "d" / "cat" / f"{i}.png", seed=i)
    with pytest.raises(DatasetError, match="only one class .'cat'. .*at least 2 classes"):
        finetune("zoonet_s", tmp_path / "d", strategy="linear_probe", **QUIET)


def test_empty_class_folder_is_ignored_with_a_warning(tmp_path, small):
    import shutil

    shutil.copytree(small, tmp_path / "d")
    (tmp_path / "d" / "empty_class").mkdir()
    with pytest.warns(DatasetWarning, match="empty_class.*3 classes"):
        data = scan_image_folder(tmp_path / "d")
    assert data.classes == ("5", "6", "7") and data.ignored_classes == ("empty_class",)


def test_val_class_unknown_to_training(tmp_path):
    for c in ("a", "b"):
        _png(tmp_path / "train" / c / "0.png")
    _png(tmp_path / "val" / "a" / "0.png")
    _png(tmp_path / "val" / "zebra" / "0.png")
    with pytest.raises(DatasetError, match="zebra"):
        scan_image_folder(tmp_path)


def test_mixed_modes_become_rgb(tmp_path):
    modes = ["L", "LA", "RGBA", "P", "I;16", "CMYK", "1"]
    for i, mode in enumerate(modes):
        ext = "jpg" if mode == "CMYK" else "png"
        _png(tmp_path / "d" / ("a" if i % 2 else "b") / f"{i}.{ext}", mode=mode, size=20,
             seed=i)
    data = scan_image_folder(tmp_path / "d", val_fraction=0.3)
    model = zoo_core.build_model("zoonet_s", 2, "linear_probe")
    _, eval_tf = make_transforms(model)
    ds = ImageDataset(data.train + data.val, eval_tf)
    assert len(ds) == len(modes)
    for i in range(len(ds)):
        x, _, _ = ds[i]
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all()


def test_corrupt_images_are_skipped_and_counted(tmp_path, small):
    """A file with no image header is dropped at scan time; a truncated PNG (header fine,
    pixels missing) is dropped from its batch at load time: both warned and counted."""
    import shutil

    root = tmp_path / "d"
    shutil.copytree(small, root)
    (root / "5" / "garbage.png").write_bytes(b"this is not a png")
    good = (root / "6").glob("*.png").__next__().read_bytes()
    (root / "6" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(BadImageWarning) as record:
        _, res = finetune("zoonet_s", root, strategy="finetune", epochs=1, seed=1, **QUIET)
    messages = " ".join(str(w.message) for w in record)
    assert "garbage.png" in messages and "truncated.png" in messages
    assert {Path(p).name for p, _ in res.skipped} == {"garbage.png", "truncated.png"}
    assert res.history[0].val_acc >= 0


def test_bad_arguments(digits):
    with pytest.raises(zoo_core.StrategyError, match="unknown strategy"):
        finetune("zoonet_s", digits, strategy="bogus", **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="epochs"):
        finetune("zoonet_s", digits, strategy="linear_probe", epochs=0, **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match=r"resume=True \(--resume\) needs"):
        finetune("zoonet_s", digits, strategy="linear_probe", resume=True, **QUIET)
    for kw, flag in (({"keep": 0}, "--keep"), ({"accumulate": 0}, "--accumulate"),
                     ({"early_stop": -1}, "--early-stop"), ({"threads": 0}, "--threads"),
                     ({"num_workers": -1}, "--workers"), ({"precision": "fp8"}, "--precision"),
                     ({"recipe": {"opt": "lamb"}}, "--opt"),
                     ({"recipe": {"smoothing": 1.5}}, "--smoothing"),
                     ({"log_with": "wandb"}, "--log-with")):
        with pytest.raises(zoo_core.InvalidArgumentError, match=flag):
            finetune("zoonet_s", digits, strategy="linear_probe", **kw, **QUIET)
    # fp16 needs a GPU: a clear error up front, not a crash inside torch
    with pytest.raises(zoo_core.InvalidArgumentError, match="fp16 needs a CUDA GPU.*bf16"):
        finetune("zoonet_s", digits, strategy="linear_probe", precision="fp16",
                 device="cpu", **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="embedded"):
        finetune("zoonet_s", digits, strategy="linear_probe", per_class=3, **QUIET)


# ----------------------------------------------------------------------------- CLI, Hub


def test_cli_finetune(tmp_path, digits, capsys):
    parser = argparse.ArgumentParser(prog="zoo")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finetune", "zoonet_s", "--data", str(digits), "--strategy",
                              "linear_probe", "--epochs", "2", "--out", str(tmp_path / "o"),
                              "--no-progress", "--batch-size", "8", "--lr", "0.05",
                              "--probe-solver", "sgd"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "best       val acc" in out
    assert f"zoo eval {tmp_path / 'o'}  (its validation split" in out
    assert "zoo push" in out and "zoo predict" in out
    assert "\r" not in out  # not a terminal: plain lines, no progress bars
    assert (tmp_path / "o" / "best" / "model.safetensors").is_file()
    args = parser.parse_args(["finetune", "--data", str(digits), "--epochs", "3", "--out",
                              str(tmp_path / "o"), "--resume", "--no-progress",
                              "--strategy", "linear_probe", "--batch-size", "8", "--lr",
                              "0.05", "--probe-solver", "sgd"])
    assert args.func(args) == 0
    assert "resume      from" in capsys.readouterr().out
    # the run folder alone: data, strategy and every setting come from its run.json
    args = parser.parse_args(["finetune", "--resume", str(tmp_path / "o"), "--epochs", "4",
                              "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "planned epochs 4" in out and "epoch   4/4" in out and "30 train" in out


def test_push_best_to_hub(hub_env, tmp_path, digits):
    repo = hub_env.repo_id("finetuned")
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=2,
                      out=tmp_path / "o", push_to_hub=repo, **QUIET)
    assert res.hub_url and "/commit/" in res.hub_url
    files = hub_env.server.files(repo)
    assert {"model.safetensors", "config.json", "README.md"} <= set(files)
    loaded = zoo_core.build_model(f"hf-hub:{repo}")
    best = load_file(tmp_path / "o" / "best" / "model.safetensors")
    assert all(torch.equal(best[k], v) for k, v in loaded.state_dict().items())
    assert loaded.zoo.label_names == res.label_names
