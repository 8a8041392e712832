"""--log-with: accelerate's trackers, MLflow's local file store read back as a real tracker,
and a clear error for an unknown or missing tracker."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core
from zoo_core.train import finetune
from zoo_core.train._trackers import parse_log_with

QUIET = {"progress": False, "verbose": False, "threads": 1, "probe_solver": "sgd"}


@pytest.mark.slow
def test_mlflow_file_store_gets_every_epoch(tmp_path, digits, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "run"
    try:
        _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=3, out=out,
                          log_with="mlflow,csv", **QUIET)
    finally:
        uri = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri("")
    assert uri == (out / "mlruns").resolve().as_uri()
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("zoo_core")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "run"
    assert runs[0].info.status == "FINISHED"  # the tracker was closed
    run_id = runs[0].info.run_id
    acc = client.get_metric_history(run_id, "val_acc")
    assert [m.step for m in acc] == [1, 2, 3]
    assert [m.value for m in acc] == pytest.approx([h.val_acc for h in res.history])
    assert runs[0].data.params["strategy"] == "linear_probe"
    assert runs[0].data.params["epochs"] == "3"
    assert (out / "metrics.csv").is_file()


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run(tmp_path, digits, monkeypatch):
    """--resume (here: extending 2 epochs to 3) logs into the run it started, not a new
    one; a store that lost the run gets a new run instead of a failed resume."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "run"
    kw = {"strategy": "linear_probe", "out": out, "log_with": "mlflow", **QUIET}
    try:
        finetune("zoonet_s", digits, epochs=2, **kw)
    finally:
        mlflow.set_tracking_uri("")
    first = (out / "trackers.json").read_text()
    # the second command on the run folder, as a user types it, in a fresh process
    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "zoo_core.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    proc = subprocess.run([*cmd, "finetune", "--resume", str(out), "--epochs", "3",
                           "--no-progress"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("zoo_core").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id in first
    assert (out / "trackers.json").read_text() == first
    acc = client.get_metric_history(runs[0].info.run_id, "val_acc")
    assert [m.step for m in acc] == [1, 2, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    assert acc[-1].value == pytest.approx(metrics["epochs"][-1]["val_acc"])

    (out / "trackers.json").write_text('{"mlflow_run_id": "0123456789abcdef"}\n')
    try:
        finetune(resume=True, epochs=4, **{k: v for k, v in kw.items() if k != "strategy"})
    finally:
        mlflow.set_tracking_uri("")
    runs = client.search_runs([client.get_experiment_by_name("zoo_core").experiment_id])
    assert len(runs) == 2
    assert "0123456789abcdef" not in (out / "trackers.json").read_text()


def test_bad_trackers_are_refused_before_the_run(tmp_path, digits):
    with pytest.raises(zoo_core.InvalidArgumentError, match="unknown tracker 'neptune'"):
        finetune("zoonet_s", digits, out=tmp_path / "a", log_with="neptune", **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="needs out=DIR"):
        finetune("zoonet_s", digits, log_with="csv", **QUIET)
    assert not (tmp_path / "a").exists()
    assert parse_log_with(["CSV", " csv", "csv"], tmp_path) == "csv"
    assert parse_log_with(None, None) is None


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb installed")
def test_cli_names_the_package_to_install(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_core.cli", "finetune", "zoonet_s", "--log-with",
         "mlflow,wandb", "--out", str(tmp_path / "r"), "--no-progress"],
        capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode != 0
    assert "zoo: error: --log-with wandb needs the wandb package" in proc.stderr
    assert "pip install wandb" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()
