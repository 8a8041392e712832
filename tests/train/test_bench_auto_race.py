"""benchmarks/bench_auto_race.py: a race of the table strategies replayed on saved
per-epoch curves (stop 25): who leads after epoch k, what the race costs, and a curve run
that does not reproduce its part's saved test accuracies is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _curve(accs, losses, seconds=None):
    c = {"val_acc": list(accs), "val_loss": list(losses)}
    if seconds is not None:
        c["seconds"] = list(seconds)
    return c


def _row(auto="finetune", pilot=None):
    return {"auto": auto, "epochs": 10, "figures": {"pilot": pilot or {}, "seconds": 1.0},
            "auto_seconds": 9.0, "chance": 0.2,
            "accuracy": {"linear_probe": 0.5, "partial:1": 0.6, "finetune": 0.7,
                         "scratch": 0.3},
            "seconds": {"linear_probe": 2.0, "partial:1": 10.0, "finetune": 10.0,
                        "scratch": 10.0},
            "curves": {"linear_probe": _curve([0.55], [1.0], [1.5]),
                       "partial:1": _curve([0.5, 0.6] + [0.6] * 8, [1.1, 0.9] + [0.9] * 8,
                                           [1.0] * 10),
                       "finetune": _curve([0.3, 0.6] + [0.7] * 8, [1.5, 0.8] + [0.7] * 8,
                                          [1.0] * 10),
                       "scratch": _curve([0.2] * 10, [1.6] * 10)}}


def test_the_race_keeps_the_leader_after_epoch_k(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_auto_race as race

    r = _row()
    # k = 1 of 10: linear_probe (solved, its only figure 0.55) leads partial:1 (0.5)
    assert race.race_epoch(r, 0.1) == 1 and race.race(r, 0.1) == ("linear_probe", "")
    # k = 2: partial:1 and finetune tie at 0.6, finetune has the lower loss
    assert race.race_epoch(r, 0.2) == 2 and race.race(r, 0.2) == ("finetune", "")
    # a refusal, or a refusal pilot's outcome, stays as auto left it
    assert race.race(_row("refused"), 0.2) == ("refused", "")
    held = _row("scratch", pilot={"scored_on": "held-out fifth + validation"})
    assert race.race(held, 0.2) == ("scratch", "")
    # cost: a run's time less its epochs after k; a solved probe and its set-up in full;
    # a curve without epoch times counts k / E of its run
    assert race.raced_seconds(r, "finetune", 2) == 2.0
    assert race.raced_seconds(r, "linear_probe", 2) == 2.0
    assert race.raced_seconds(r, "scratch", 2) == pytest.approx(2.0)
    # the measurement (1 s) and the four's first two epochs (2 + 2 + 2 + 2) of 32 s
    assert race.race_cost([r], 0.2) == pytest.approx(9.0 / 32.0)


def test_the_replay_runs_on_the_saved_curves_and_refuses_one_that_moved(tmp_path,
                                                                          monkeypatch):
    script = str(BENCH / "bench_auto_race.py")
    out = subprocess.run([sys.executable, script, "--fractions", "0.07", "1.0", "--parts",
                          "fresh9", "fresh10", "fresh11", "fresh12"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line}
    assert {"fresh9", "fresh10", "fresh11", "fresh12"} <= set(rows) and "fresh13" not in rows
    # the seen parts' figures quoted in benchmarks/README.md (stop 25): auto 40, always
    # finetune 46, the race 37 at 0.07 and 59 at 1.0, of 72
    assert rows["all"][1:3] == ["72", "40"] and rows["all"][8] == "46"
    assert (rows["all"][12], rows["all"][14]) == ("37", "59")
    assert "race 0.07: decision cost" in out.stdout
    # every part: fresh13's real race run is checked against the replay
    out = subprocess.run([sys.executable, script, "--fractions", "1.0"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fresh13: the real race run (race_fraction 1) chose as the replay on 18 of 18" \
        in out.stdout
    bad = subprocess.run([sys.executable, script, "--parts", "nope"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "--parts nope: no such part" in bad.stderr
    bad = subprocess.run([sys.executable, str(BENCH / "bench_auto_race.py"), "--fractions",
                          "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "each must be in (0, 1]" in bad.stderr

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_auto_race as race

    saved = json.loads((BENCH / "results" / "bench_auto_curves_fresh9.json").read_text())
    saved["fresh9"][0]["accuracy"]["finetune"] += 0.01
    (tmp_path / "bench_auto_curves_fresh9.json").write_text(json.dumps(saved))
    (tmp_path / "bench_auto_test120_fresh9.json").write_bytes(
        (BENCH / "results" / "bench_auto_test120_fresh9.json").read_bytes())
    monkeypatch.setattr(race, "RESULTS", tmp_path)
    with pytest.raises(SystemExit, match="does not reproduce bench_auto_test120_fresh9"):
        race.load_curves("fresh9")
