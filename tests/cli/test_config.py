"""``zoo finetune --config FILE`` (YAML, JSON, a run's run.json) and ``--print-config``:
the file fills what the command line left out, the printed config reads back to the same
options, and a bad file is one error that names the file and the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zoo_core.cli.main import main


class _Called(Exception):
    pass


@pytest.fixture
def called(monkeypatch):
    """The keyword arguments zoo finetune passes to finetune() (nothing is trained)."""
    def fake(**kwargs):
        raise _Called(kwargs)

    monkeypatch.setattr("zoo_core.cli.finetune.finetune", fake)

    def run(*argv: str) -> dict:
        with pytest.raises(_Called) as info:
            main(["finetune", *argv])
        return info.value.args[0]

    return run


def _printed(capsys, *argv: str) -> str:
    assert main(["finetune", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


def test_printed_config_reads_back_the_same(tmp_path, capsys):
    text = _printed(capsys, "resnet18", "--lr", "0.01", "--mixup", "0.2", "--augment")
    printed = yaml.safe_load(text)
    assert printed["model"] == "resnet18" and printed["lr"] == 0.01
    assert printed["mixup"] == 0.2 and printed["augment"] is True and printed["seed"] == 0
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps(printed), encoding="utf-8")
    assert _printed(capsys, "--config", str(tmp_path / "c.yaml")) == text
    assert _printed(capsys, "--config", str(tmp_path / "c.json")) == text


def test_command_line_overrides_the_file(tmp_path, called):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 8\nlr: 1e-3\nwarmup-lr: 2e-5\nworkers: 2\nseed: 0\n"
                   "strategy: linear_probe\n", encoding="utf-8")
    kwargs = called("--config", str(cfg), "--lr", "0.5", "--strategy", "finetune")
    assert kwargs["batch_size"] == 8 and kwargs["num_workers"] == 2
    assert kwargs["lr"] == 0.5 and kwargs["strategy"] == "finetune"
    assert kwargs["recipe"] == {"warmup_lr": 2e-5}
    assert kwargs["seed"] == 0  # a value from the file counts, even the default's


RUN_JSON = {
    "command": "zoo finetune --strategy finetune --seed 3", "hyperparameters": {"lr": 0.003},
    "arguments": {
        "model": "zoonet_s", "data": None, "strategy": "finetune", "epochs": 1,
        "batch_size": 8, "lr": None, "seed": 3, "val_fraction": 0.2, "per_class": None,
        "weights": None, "cache_features": False, "augment": False, "input_size": [24, 24],
        "precision": "32", "accumulate": 1,
        "recipe": {"opt": "adamw", "momentum": 0.9, "weight_decay": 0.0001,
                   "layer_decay": None, "warmup_epochs": 0, "warmup_lr": 1e-05,
                   "min_lr": 0.0, "smoothing": 0.0, "mixup": 0.2, "cutmix": 0.0,
                   "ema_decay": 0.99},
        "early_stop": None, "keep": 1, "log_with": None, "lp_epochs": None,
        "probe_solver": "lbfgs", "sync_bn": False}}


def test_a_runs_own_run_json_repeats_the_run(tmp_path, called):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps(RUN_JSON), encoding="utf-8")
    for config in (run / "run.json", run):  # the file or its folder
        kwargs = called("--config", str(config), "--epochs", "4")
        assert kwargs["epochs"] == 4 and kwargs["seed"] == 3 and kwargs["batch_size"] == 8
        assert kwargs["strategy"] == "finetune" and kwargs["input_size"] == 24
        assert kwargs["weights"] is None and kwargs["cache_features"] is False
        assert kwargs["recipe"]["mixup"] == 0.2 and kwargs["recipe"]["ema_decay"] == 0.99


def test_run_json_model_kwargs_and_balance_come_back(tmp_path, called, capsys):
    """A run with --model-kwargs / --balance repeats from its run.json (it records the
    model kwargs as a mapping; the flag takes K=V items) and prints a config that reads
    back to the same call."""
    run = tmp_path / "run"
    run.mkdir()
    record = {**RUN_JSON, "arguments": {**RUN_JSON["arguments"], "balance": "loss",
                            "model_kwargs": {"drop_rate": 0.1, "in_chans": 1,
                                             "global_pool": "avg", "head_bias": None,
                                             "legacy": False}}}
    (run / "run.json").write_text(json.dumps(record), encoding="utf-8")
    kwargs = called("--config", str(run))
    assert kwargs["balance"] == "loss"
    assert kwargs["model_kwargs"] == {"drop_rate": 0.1, "in_chans": 1,
                                      "global_pool": "avg", "head_bias": None, "legacy": False}
    text = _printed(capsys, "--config", str(run))
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    assert called("--config", str(tmp_path / "c.yaml"))["model_kwargs"] == \
        kwargs["model_kwargs"]


@pytest.mark.parametrize("text, message", [
    ("batchsize: 8\n", r"unknown option 'batchsize'; did you mean 'batch_size'\?"),
    ("epochs: 2.5\n", "epochs must be an int, not 2.5"),
    ("opt: adam\n", "opt is 'adam'; choose from adamw, sgd"),
    ("augment: 1\n", "augment must be true or false, not 1"),
    ("batch_size: null\n", r"batch_size is null; give a value \(default 16\)"),
    ("- 1\n- 2\n", "holds a list; it must be a mapping of option names"),
    ("lr: [1\n", "is not valid YAML"),
])
def test_bad_config_is_one_error_naming_file_and_key(tmp_path, capsys, text, message):
    import re

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text, encoding="utf-8")
    assert main(["finetune", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"zoo: error: --config {cfg}") and err.count("\n") == 1
    assert re.search(message, err), err


def test_missing_and_bad_json_config(tmp_path, capsys):
    assert main(["finetune", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert f"cannot read --config {tmp_path / 'nope.yaml'}" in capsys.readouterr().err
    (tmp_path / "c.json").write_text("{'lr': 1}", encoding="utf-8")
    assert main(["finetune", "--config", str(tmp_path / "c.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_zoo_command_prints_a_config_it_reads_back(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 3\nmodel: resnet18\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "zoo_core.cli", "finetune", "--config",
                           str(cfg), "--epochs", "5", "--print-config"], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)
    assert printed["epochs"] == 5 and printed["model"] == "resnet18"
    assert not Path("runs").exists() or not any(Path("runs").glob("resnet18-*"))


@pytest.mark.parametrize("change, message", [
    ({"input_size": [24, 32]}, r"input_size \[24, 32\] is not square"),
    ({"augment": {"hflip": 0.0}}, r"augment holds create_transform options .*Python API"),
    ({"sync_bn": True}, "unknown option 'sync_bn'"),
    ({"batch_size": [8]}, r"batch_size must be a single value, not \[8\]"),
])
def test_run_json_the_command_line_cannot_repeat(tmp_path, capsys, change, message):
    import re

    record = json.loads(json.dumps(RUN_JSON))
    record["arguments"].update(change)
    (tmp_path / "run.json").write_text(json.dumps(record), encoding="utf-8")
    assert main(["finetune", "--config", str(tmp_path / "run.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"zoo: error: --config {tmp_path / 'run.json'}"), err
    assert re.search(message, err), err
