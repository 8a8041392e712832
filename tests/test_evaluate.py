"""zoo eval / zoo predict on a model fine-tuned and pushed to the local Hub server."""

from __future__ import annotations

import json

import pytest
import torch

from zoo_core import cli
from zoo_core._data import load_rgb, make_transforms
from zoo_core._evaluate import evaluate, predict
from zoo_core._finetune import finetune
from zoo_core.errors import InvalidArgumentError
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
    assert "no such image" in capsys.readouterr().err
    with pytest.raises(InvalidArgumentError, match="top-k"):
        predict(name, [str(images[0])], top_k=0)
