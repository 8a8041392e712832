"""``zoo finetune`` off and on a terminal: plain lines per epoch / strategy / candidate,
the run's bar with an ETA on a terminal, ``--json``, and the model-kwargs flags through
the real command (issue 20 items 4 and 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zoo_core.cli._finetune_kit import parse_value

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def zoo(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zoo_core.cli", *args], env=ENV, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_parse_value():
    assert [parse_value(v) for v in ("3", "0.5", "1e-3", "true", "False", "none", "avg",
                                     "nan")] == [3, 0.5, 1e-3, True, False, None, "avg", "nan"]


@pytest.mark.slow
def test_json_piped_prints_one_record_and_epoch_lines_and_kwargs_survive_resume(tmp_path):
    run = tmp_path / "r"
    p = zoo("finetune", "zoonet_s", "--strategy", "finetune", "--epochs", "2", "--in-chans",
            "1", "--model-kwargs", "drop_rate=0.1", "--out", str(run), "--json")
    assert p.returncode == 0, p.stderr
    record = json.loads(p.stdout)  # stdout is the record and nothing else
    assert record["strategy"] == "finetune" and len(record["history"]) == 2
    assert "epoch   1/2" in p.stderr and "epoch   2/2" in p.stderr  # human lines: stderr
    assert "\r" not in p.stderr  # no bar off a terminal
    saved = json.loads((run / "run.json").read_text())
    assert saved["arguments"]["model_kwargs"] == {"drop_rate": 0.1, "in_chans": 1}
    assert json.loads((run / "best" / "config.json").read_text())["model_args"] == {
        "drop_rate": 0.1, "in_chans": 1}
    # --resume restores them (the model is rebuilt with one input channel)...
    p = zoo("finetune", "--resume", str(run), "--epochs", "3", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["history"][-1]["epoch"] == 3
    assert json.loads((run / "run.json").read_text())["arguments"]["model_kwargs"] == {
        "drop_rate": 0.1, "in_chans": 1}
    # ... and refuses a different one, naming the flags
    p = zoo("finetune", "--resume", str(run), "--epochs", "4", "--in-chans", "3")
    assert p.returncode == 2 and p.stderr.startswith("zoo: error: cannot resume")
    assert "--in-chans" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("args, match", [
    (["--model-kwargs", "drop_rate"], "--model-kwargs 'drop_rate': expected KEY=VALUE"),
    (["--model-kwargs", "in_chans=1", "--in-chans", "1"], "in_chans is given by both"),
    (["--model-kwargs", "a=1", "--model-kwargs", "a=2"], "a is given twice"),
    (["--drop-path-rate", "0.1", "--strategy", "finetune"], "drop_path_rate"),
    (["--json", "--compare"], "--json prints one run's record"),
])
def test_bad_model_kwargs_flags_are_one_line_errors(args, match, tmp_path):
    p = zoo("finetune", "zoonet_s", *args, "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and p.stderr.startswith("zoo: error:"), p.stderr
    assert match in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_on_a_terminal_the_run_bar_shows_an_eta_over_all_epochs(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # a new pty is 0 columns wide, and tqdm draws nothing in no columns
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo_core.cli", "finetune", "zoonet_s", "--strategy",
         "finetune", "--epochs", "3", "--out", str(tmp_path / "r")],
        env=ENV, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert "run: 3 epochs" in text or "run: epoch" in text
    assert "run: epoch 2/3 done" in text  # the run's bar follows the epochs
    assert "finetune epoch 3/3" in text  # the epoch's bar below it
    assert "<" in text  # tqdm's elapsed<remaining: the ETA


def test_compare_cell_prints_a_line_per_strategy_off_a_terminal(capsys):
    from zoo_core.train._compare import run_cell

    run_cell("zoonet_s", "digits5-9", 4, epochs=1, seed=0,
             strategies=("linear_probe", "finetune"), progress=True, val_per_class=4,
             with_auto=False)
    err = capsys.readouterr().err
    assert "digits5-9 (4/class): linear_probe val acc" in err
    assert "digits5-9 (4/class): finetune val acc" in err and "\r" not in err


def test_off_a_terminal_long_loops_print_a_heartbeat(digits, capsys, monkeypatch):
    from zoo_core.train import _heartbeat, finetune

    monkeypatch.setattr(_heartbeat, "EVERY_SECONDS", 0.0)  # every batch, for the test
    finetune("zoonet_s", digits, strategy="finetune", epochs=1, batch_size=8, threads=1,
             verbose=False)
    finetune("zoonet_s", digits, strategy="linear_probe", batch_size=8, threads=1,
             verbose=False)
    err = capsys.readouterr().err
    assert "finetune epoch 1/1: 1/4 batches" in err and "finetune epoch 1/1: 4/4" in err
    assert "features (train, once): 1/" in err and "\r" not in err


@pytest.mark.slow
def test_off_a_terminal_auto_prints_a_line_per_measuring_pass(digits, capsys):
    from zoo_core.train import finetune

    finetune("zoonet_s", digits, strategy="auto", epochs=1, threads=1, verbose=False)
    err = capsys.readouterr().err
    assert "auto: measured linear_probe features (1/3)" in err
    assert "auto: measured random init features (3/3)" in err
