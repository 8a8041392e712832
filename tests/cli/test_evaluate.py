"""zoo eval / zoo predict on a model fine-tuned and pushed to the local Hub server."""

from __future__ import annotations

import json

import pytest
import torch

from zoo_core import cli
from zoo_core.cli.evaluate import evaluate, predict
from zoo_core.data._data import load_rgb, make_transforms
from zoo_core.errors import InvalidArgumentError
from zoo_core.train import finetune
from zoo_core_plugins.zoonet.digits import export_imagefolder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_and_predict(hub_env, tmp_path, capsys):
    data = export_imagefolder(tmp_path / "digits", per_class=6)
    repo = hub_env.repo_id("evaluated")
    model, res = finetune("zoonet_s", data, strategy="linear_probe", out=tmp_path / "run",
                          push_to_hub=repo, progress=False, verbose=False, threads=1)
    name = f"hf-hub:{repo}"
    out = tmp_path / "eval"
    metrics = evaluate(name, data, out=out)
    assert metrics["num_images"] == res.num_val and metrics["data"] == str(data / "val")
    assert metrics["accuracy"] == pytest.approx(res.best_val_acc, abs=1e-9)
    assert set(metrics["per_class"]) == set(res.label_names)
    matrix = json.loads((out / "confusion_matrix.json").read_text())["matrix"]
    assert sum(map(sum, matrix)) == res.num_val
    assert sum(matrix[i][i] for i in range(5)) == round(metrics["accuracy"] * res.num_val)
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    assert cli.main(["eval", name, "--data", str(data), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["accuracy"]

    images = sorted((data / "val" / "7").glob("*.png"))[:2]
    rows = predict(name, [str(p) for p in images], top_k=3)
    assert [len(r["top"]) for r in rows] == [3, 3]
    probs = [t["probability"] for t in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    x = make_transforms(model)[1](load_rgb(images[0]))[None]
    with torch.no_grad():
        expect = int(model(x).argmax(1))
    assert rows[0]["top"][0]["label"] == res.label_names[expect]
    assert cli.main(["predict", name, str(images[0]), "--top-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["top"]) == 2

    assert cli.main(["predict", name, str(tmp_path / "nope.png")]) == 2
    assert "no such image file" in capsys.readouterr().err
    with pytest.raises(InvalidArgumentError, match="top-k"):
        predict(name, [str(images[0])], top_k=0)


def _zoo(*args: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "zoo_core.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_eval_knows_the_run(tmp_path, capsys):
    """An unsplit folder: `zoo eval RUN` scores the run's validation split; `--data` on
    the same folder leaves the run's training images out unless --include-train."""
    data = export_imagefolder(tmp_path / "d", classes=(5, 6, 7), per_class=10,
                              split=("all",)) / "all"
    run = tmp_path / "run"
    proc = _zoo("finetune", "--data", str(data), "--strategy", "linear_probe", "--epochs",
                "1", "--out", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"zoo eval {run}" in proc.stdout
    split = json.loads((run / "split.json").read_text())
    assert split["format"] == 1 and split["root"] == str(data.resolve())
    assert split["classes"] == ["5", "6", "7"] and len(split["train"]) + len(split["val"]) == 30
    assert all(not rel.startswith("/") and (data / rel).is_file() and rel.startswith(name)
               for rel, name in split["train"] + split["val"])
    n_val, n_train = len(split["val"]), len(split["train"])
    run_val = json.loads((run / "metrics.json").read_text())["epochs"][-1]["val_acc"]

    proc = _zoo("eval", str(run))
    assert proc.returncode == 0, proc.stderr
    assert f"on {n_val} images: validation split of run {run}" in proc.stdout
    own = json.loads((run / "eval" / "metrics.json").read_text())
    assert own["num_images"] == n_val and own["accuracy"] == pytest.approx(run_val)
    assert (run / "eval" / "confusion_matrix.png").is_file()

    assert cli.main(["eval", str(run / "best"), "--json", "--out", str(tmp_path / "e")]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == n_val
    assert cli.main(["eval", str(run / "best"), "--data", str(data), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["num_images"] == n_val and res["excluded_train_images"] == n_train
    assert res["split"] == f"{data} minus {n_train} training images of run {run}"
    assert res["accuracy"] == pytest.approx(own["accuracy"])

    import warnings

    with warnings.catch_warnings():  # the command prints it as one line, as `zoo` does
        warnings.simplefilter("default")
        assert cli.main(["eval", str(run), "--data", str(data), "--include-train"]) == 0
    out, err = capsys.readouterr()
    assert f"on 30 images: {data} including {n_train} training images" in out
    assert f"zoo: warning: {n_train} of the 30 images under {data} are training images" in err

    lone = tmp_path / "lone"
    zoo_core_model = __import__("zoo_core").build_model(str(run / "best"))
    __import__("zoo_core").save_pretrained(zoo_core_model, lone)
    assert cli.main(["eval", str(lone)]) == 2
    assert "--data DIR is needed" in capsys.readouterr().err


def test_predict_folders_and_single_channel_models(tmp_path, capsys):
    import zoo_core

    data = export_imagefolder(tmp_path / "d", classes=(5, 6), per_class=2, split=("all",))
    model = zoo_core.build_model("zoonet_s", 2, "finetune", in_chans=1, label_names=["5", "6"])
    zoo_core.save_pretrained(model, tmp_path / "gray")
    folder = data / "all"
    assert cli.main(["predict", str(tmp_path / "gray"), str(folder), "--json",
                     "--top-k", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    images = sorted(str(p) for p in folder.rglob("*.png"))
    assert sorted(r["image"] for r in rows) == images
    gray = make_transforms(model)[1](load_rgb(images[0]).convert("L"))[None]
    with torch.no_grad():
        expect = float(torch.softmax(model.eval()(gray), 1).max())
    first = next(r for r in rows if r["image"] == images[0])
    assert first["top"][0]["probability"] == pytest.approx(expect, abs=1e-5)
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tmp_path / "gray"), str(tmp_path / "empty")]) == 2
    assert "no images under the folder" in capsys.readouterr().err
