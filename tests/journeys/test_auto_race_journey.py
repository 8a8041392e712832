"""auto's opt-in race as a user meets it: ``zoo finetune --race F`` (the installed
command, a fresh process) races the four table strategies, trains the leader, records the
race in run.json, and the leader's explicit run in another fresh process trains the same
model; a resumed run does not race again, even with a registry file that races every run
(``[auto] race_fraction``)."""

from __future__ import annotations

import json


def test_the_race_picks_the_leader_records_it_and_resumes_without_racing(journey,
                                                                          digit_folder):
    conf = journey.home / "race.toml"
    conf.write_text("[auto]\nrace_fraction = 0.5\n")
    env = {"ZOO_CORE_REGISTRY": str(conf)}
    out = journey.home / "run"
    step = journey.zoo("finetune", "--data", str(digit_folder), "--epochs", "4", "--race",
                       "0.5", "--no-progress", "--threads", "1", "--json", "--out", str(out))
    record = json.loads(step.stdout)
    race = json.loads((out / "run.json").read_text())["figures"]["race"]
    runs = race["runs"]
    assert list(runs) == ["linear_probe", "partial:1", "finetune", "scratch"]
    assert runs["linear_probe"]["epochs"] == 1
    assert all(runs[s]["epoch"] == 2 and runs[s]["epochs"] == 4
               for s in ("partial:1", "finetune", "scratch"))
    leader = max(runs, key=lambda s: (runs[s]["val_acc"], -runs[s]["val_loss"]))
    assert record["strategy"] == leader
    for s in runs:
        assert f"race        {s}: val acc {runs[s]['val_acc']:.3f}" in step.stderr
    assert f"{leader} led, so it trains from the start" in step.stderr

    # the leader's explicit run, in another fresh process: the same model, epoch by epoch
    again = journey.home / "explicit"
    journey.zoo("finetune", "--data", str(digit_folder), "--epochs", "4", "--strategy",
                leader, "--no-progress", "--threads", "1", "--json", "--out", str(again))
    curve = [m["val_acc"] for m in json.loads((out / "metrics.json").read_text())["epochs"]]
    assert curve == [m["val_acc"] for m in
                     json.loads((again / "metrics.json").read_text())["epochs"]]

    # a resumed run continues the leader without a second race (a solved linear probe
    # has nothing to extend, and says so)
    step = journey.zoo("finetune", "--resume", str(out), "--epochs", "5", "--no-progress",
                       "--threads", "1", "--json", ok=leader != "linear_probe", **env)
    assert "race " not in step.stderr and "Traceback" not in step.stderr
    if leader == "linear_probe":
        assert "is finished: its head was solved in one step" in step.stderr
    else:
        assert json.loads(step.stdout)["strategy"] == leader
        assert f"strategy {leader}; planned epochs 5" in step.stderr
