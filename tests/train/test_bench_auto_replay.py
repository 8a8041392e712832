"""benchmarks/bench_auto.py --replay: re-deciding from saved figures under the current
rules, pilots read back in any order, a refusal's pilot tested, an assumed pilot marked."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _bench(name: str = "bench_auto"):
    """A script under benchmarks/ as a module (its own imports resolve beside it)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def _row(task, per_class, seed):
    rows = json.loads((BENCH / "results" / "bench_auto_issue21_tuning.json").read_text())
    return copy.deepcopy(next(r for r in rows["tuning"]
                              if (r["task"], r["per_class"], r["seed"]) ==
                              (task, per_class, seed)))


def test_replay_tests_a_refusals_pilot_and_marks_an_assumed_one(tmp_path, monkeypatch):
    from zoo_core.registry._registry import reset_registry

    bench = _bench()
    # photo-shapes 80/class seed 1: no probe significant, but on 200 images the pretrained
    # probe's bound (0.369) does not rule out chance 0.25 + 0.10: finetune, no pilot
    row = _row("photo-shapes", 80, 1)
    (out,) = bench.replay([row])
    assert (out["auto"], out["note"], out["cell"]) == ("finetune", "", "scarce + dissimilar")
    # asked to rule out only a 15-point gain, the bound does: a refusal with a pilot
    user = tmp_path / "r.toml"
    user.write_text("[auto]\nrefuse_gain = 0.15\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    reset_registry()
    (out,) = bench.replay([row])
    assert (out["auto"], out["note"]) == ("finetune", "pilot?")  # not in the saved run
    assert out["auto_seconds"] > row["auto_seconds"]  # its cost is estimated
    pilot = {"candidates": ["finetune"], "accuracy": {"finetune": 0.30}, "holdout": 64,
             "seconds": 1.5, "evidence": {"p": 0.2}}
    row["figures"]["pilot"] = pilot
    (out,) = bench.replay([row])
    assert (out["auto"], out["note"]) == ("refused", "") and not out["hit"]
    pilot["evidence"]["p"] = 3e-5
    (out,) = bench.replay([row])
    assert (out["auto"], out["hit"]) == ("finetune", False)  # 5 points behind first:1


def test_replay_reads_a_saved_pilot_in_any_order():
    bench = _bench()
    # digits 5-9, all images: plenty + dissimilar now pilots scratch against finetune; the
    # saved run piloted finetune against scratch (1.000 vs 0.926)
    (out,) = bench.replay([_row("digits5-9", None, 0)])
    assert (out["auto"], out["cell"], out["note"]) == ("finetune", "plenty + dissimilar", "")


def test_replay_scores_a_test_split_run_on_either_split(tmp_path):
    """A --test-per-class run keeps both figures: --replay scores the 120-image test split
    by default and the runs' own validation images with --scored-on val; a run without a
    test split is refused with --scored-on val instead of scoring one split twice."""
    import subprocess

    saved = BENCH / "results" / "bench_auto_test120_fresh.json"
    rows = json.loads(saved.read_text())["fresh"]
    assert all(set(r["accuracy"]) == set(r["val_accuracy"]) for r in rows)
    assert any(r["accuracy"] != r["val_accuracy"] for r in rows)

    def replay(*extra):
        return subprocess.run([sys.executable, str(BENCH / "bench_auto.py"), "--replay",
                               *extra], capture_output=True, text=True, timeout=300)

    test, val = replay(str(saved)), replay(str(saved), "--scored-on", "val")
    assert test.returncode == val.returncode == 0, test.stderr + val.stderr
    bench = _bench()
    for out, key in ((test.stdout, "accuracy"), (val.stdout, "val_accuracy")):
        scored = bench.replay([{**r, "accuracy": r[key]} for r in rows])
        hits = bench.summarise(scored)["hits"]
        assert f"auto hits {hits}/" in out
    assert "validation images" in val.stdout and "validation images" not in test.stdout
    old = replay(str(BENCH / "results" / "bench_auto_issue21c_fresh.json"), "--scored-on",
                 "val")
    assert old.returncode == 2 and "has no test split" in old.stderr


def test_candidate_rules_replay_the_saved_test_split_runs():
    """benchmarks/bench_auto_rules.py scores candidate rules on the saved test-split
    runs; the current rule's column is each run's own auto, so it must agree with
    bench_auto.py's summary of the same file."""
    import subprocess

    out = subprocess.run([sys.executable, str(BENCH / "bench_auto_rules.py"), "--show", "A"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    bench = _bench()
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    total = 0
    for part in bench.PARTS:
        saved = BENCH / "results" / f"bench_auto_test120_{part}.json"
        if not saved.exists():
            assert f"{part:<8} (no saved run: {saved.name})" in out.stdout
            continue
        rows = json.loads(saved.read_text())
        s = bench.summarise(rows[part])
        assert lines[part][1:4] == [str(s["task_seeds"]), str(s["hits"]),
                                    f"{s['mean_points_lost']:.2f}"]
        # the fixed-strategy columns agree with bench_auto.py's too
        fixed = lines[part][lines[part].index("|") + 1:][::2]
        assert fixed == [str(s["fixed_hits"].get(k, "-")) for k in bench.STRATEGIES]
        total += s["task_seeds"]
    assert lines["all"][1] == str(total)
    # A swaps linear_probe for partial:1 in scarce + similar only (and says where)
    assert "glyph-groups pc=10 seed=0: linear_probe -> partial:1" in out.stdout
    assert "A on fresh3:\n    (as the current rule)" in out.stdout
    # --cells splits the same task-seeds by the cell auto measured (refusals left out)
    cells = subprocess.run([sys.executable, str(BENCH / "bench_auto_rules.py"), "--cells"],
                           capture_output=True, text=True, timeout=300)
    assert cells.returncode == 0, cells.stderr
    per_cell = [line.split() for line in cells.stdout.splitlines()[1:]]
    assert {" ".join(c[:3]) for c in per_cell} >= {"scarce + similar", "scarce + dissimilar"}
    refused = sum(1 for part in bench.PARTS
                  if (BENCH / "results" / f"bench_auto_test120_{part}.json").exists()
                  for r in json.loads((BENCH / "results" / f"bench_auto_test120_{part}.json")
                                      .read_text())[part]
                  if r["auto"] == "refused" and not bench.saturated(r))
    assert sum(int(c[3]) for c in per_cell) == total - refused
    # before-A undoes A on runs saved with it in force; on runs saved before it, it is
    # the current rule's column again
    for part in ("tuning", "heldout", "fresh", "fresh2", "fresh3", "fresh4"):
        assert lines[part][4:6] == lines[part][2:4]


def test_task_filter_names_the_parts_tasks(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, str(BENCH / "bench_auto.py"), "--part", "fresh3",
                          "--task", "photo-swap"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "--task photo-swap: not in part 'fresh3'; its tasks: digits5-9-bold" in out.stderr


def test_pilot_redo_picks_its_rows_and_checks_its_fraction():
    import subprocess

    mod = _bench("bench_auto_pilot")
    rows = json.loads((BENCH / "results" / "bench_auto_test120_fresh.json").read_text())
    redone = [r for r in rows["fresh"] if mod.piloted(r)]
    # photo scale is the fresh part's only task piloting two strategies to train (the
    # refusals' one-candidate pilots are not redone)
    assert {(r["task"], r["seed"]) for r in redone} == {("photo-scale", s) for s in range(3)}
    test = {"finetune": 0.842, "scratch": 0.792}
    assert mod.right("finetune", ["finetune", "scratch"], test)
    assert not mod.right("scratch", ["finetune", "scratch"], test)
    out = subprocess.run([sys.executable, str(BENCH / "bench_auto_pilot.py"), "--fraction",
                          "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--fraction 0.0: must be within (0, 1]" in out.stderr


def test_stage_probe_hook_pools_every_output_shape():
    import torch

    mod = _bench("bench_auto_stages")
    store: list = []
    hook = mod._pool_into(store)
    hook(None, (), torch.arange(16.0).reshape(1, 1, 4, 4))  # a feature map: its mean
    hook(None, (), torch.ones(2, 3))  # already flat
    assert store[0].tolist() == [[7.5]] and store[1].shape == (2, 3)


def test_bn_shift_hook_measures_the_kl_from_the_running_statistics():
    """benchmarks/bench_auto_bnshift.py: zero for data like what the BatchNorm learnt, more
    for shifted data; each BatchNorm counted with the stage it sits in."""
    import torch
    import torch.nn as nn

    mod = _bench("bench_auto_bnshift")
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=None).train()
    x = torch.randn(32, 3, 6, 6) * 2 + 1
    with torch.no_grad():
        bn(x)  # cumulative average: its running stats are exactly x's
    bn.eval()

    def kl(data):
        store: dict = {}
        handle = bn.register_forward_pre_hook(mod._kl_hook(store, "bn"))
        with torch.no_grad():
            bn(data[:16])
            bn(data[16:])  # summed over batches
        handle.remove()
        return mod.kl_from_running(*store["bn"])

    assert abs(kl(x)) < 1e-3
    assert kl(x * 0.2 + 3) > 1.0
    stages = ("stages.0", "stages.1")
    by = mod.per_stage({"stem.1": 1.0, "stages.0.0.1": 3.0, "stages.1.0.1": 5.0}, stages)
    assert by == [2.0, 5.0]  # the stem counts with stage 0


@pytest.mark.slow
def test_more_strategies_train_on_the_saved_task_seeds_as_they_were(tmp_path):
    """benchmarks/bench_auto_more.py writes a saved task-seed again and trains one more
    strategy on it: trained again, a strategy the saved run trained scores what it scored
    (and the linear_probe check says the task came back as it was)."""
    import subprocess

    saved = next(r for r in json.loads((BENCH / "results" / "bench_auto_test120_fresh7.json")
                                       .read_text())["fresh7"]
                 if (r["task"], r["seed"]) == ("glyph-halves", 0))
    out_json = tmp_path / "more.json"
    out = subprocess.run([sys.executable, str(BENCH / "bench_auto_more.py"), "--strategy",
                          "partial:1", "--parts", "fresh7", "--task", "glyph-halves",
                          "--seed", "0", "--json", str(out_json)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out_json.read_text())["fresh7"]
    assert row["reproduced"] and row["check"] == saved["accuracy"]["linear_probe"]
    assert row["accuracy"] == saved["accuracy"]["partial:1"]
    assert "glyph-halves pc=10 seed=0" in out.stdout and "NOT REPRODUCED" not in out.stdout
    # a strategy that does not exist is named before anything trains
    bad = subprocess.run([sys.executable, str(BENCH / "bench_auto_more.py"), "--strategy",
                          "partial:x"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--strategy partial:x:" in bad.stderr


def test_validation_pilot_scores_its_choice_on_the_saved_test_split(tmp_path):
    """benchmarks/bench_auto_valpilot.py --score: a pilot picks by validation accuracy and
    is scored with the saved full run's *test* accuracy of the strategy it picked."""
    import subprocess

    saved = [r for r in json.loads((BENCH / "results" / "bench_auto_test120_fresh7.json")
                                   .read_text())["fresh7"] if r["task"] == "glyph-halves"]
    rows = []
    for r in saved:
        lp = {"val": 0.5, "test": r["accuracy"]["linear_probe"], "seconds": 1.0}
        ft = {"val": 0.9, "test": 0.0, "seconds": 1.0}  # the pilot's own test is not used
        rows.append({"task": r["task"], "per_class": r["per_class"], "seed": r["seed"],
                     "epochs": r["epochs"], "reproduced": True,
                     "runs": {f"linear_probe@{r['epochs']}": lp, "finetune@4": ft}})
    path = tmp_path / "vp.json"
    path.write_text(json.dumps({"fresh7": rows}))
    out = subprocess.run([sys.executable, str(BENCH / "bench_auto_valpilot.py"), "--score",
                          str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    bench = _bench()
    scored = [r for r in saved if not bench.saturated(r) and r["auto"] != "refused"]
    hits = sum(max(r["accuracy"].values()) - r["accuracy"]["finetune"] <= 0.02 for r in scored)
    line = next(x for x in out.stdout.splitlines() if x.startswith("lp, finetune@4"))
    assert line.split()[2] == str(hits)
    bad = subprocess.run([sys.executable, str(BENCH / "bench_auto_valpilot.py"), "--epochs",
                          "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--epochs 0: must be at least 1" in bad.stderr


def test_candidate_f_keeps_the_better_of_autos_choice_and_finetune_on_validation(monkeypatch):
    """Candidate F (stop 24) trains A's choice and ``finetune``, keeps the one with the
    better validation accuracy (a tie keeps A's), never overrides a refusal, and its
    cost is the measurement and the run not kept."""
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_auto_rules as rules

    def row(auto, va, seconds=None):
        return {"auto": auto, "figures": {"decision": {"cell": "scarce + dissimilar"}},
                "val_accuracy": va, "accuracy": {k: 0.5 for k in va}, "chance": 0.2,
                "auto_seconds": 1.0,
                "seconds": seconds or {"linear_probe": 1.0, "partial:1": 2.0,
                                       "finetune": 3.0, "scratch": 4.0}}

    va = {"linear_probe": 0.6, "partial:1": 0.7, "finetune": 0.8, "scratch": 0.1}
    assert rules.rule_f(row("partial:1", va), None) == ("finetune", "")
    assert rules.rule_f(row("partial:1", {**va, "finetune": 0.7}), None) == ("partial:1", "")
    assert rules.rule_f(row("refused", va), None) == ("refused", "")
    # finetune kept: the measurement (1 s) and partial:1's run (2 s) of the four's 10 s;
    # saturated rows (every strategy equal) do not count
    r = row("partial:1", va)
    r["accuracy"] = {"linear_probe": 0.5, "partial:1": 0.6, "finetune": 0.7, "scratch": 0.2}
    assert rules.trained_cost([r, row("finetune", va)], None, rules.rule_f,
                              "finetune") == 3.0 / 10.0


def test_rules_replay_takes_a_reruns_decisions_and_a_subset_of_parts():
    """--rerun puts a later run's auto decisions into the saved rows (stop 24's refusal
    fix: fresh10's two wrong refusals on photo-inside become trained runs), --parts totals
    only the parts named, and a bad --rerun file is one clear error."""
    import subprocess

    script = str(BENCH / "bench_auto_rules.py")
    fix = str(BENCH / "results" / "bench_auto_refusal_pilot_stop24.json")
    before = subprocess.run([sys.executable, script, "--parts", "fresh10"],
                            capture_output=True, text=True, timeout=300)
    after = subprocess.run([sys.executable, script, "--parts", "fresh10", "fresh3",
                            "--rerun", fix], capture_output=True, text=True, timeout=300)
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    row = {line.split()[0]: line.split() for line in before.stdout.splitlines() if line}
    assert row["fresh10"][2] == "13" and row["all"][1] == "18" and "fresh3" not in row
    row = {line.split()[0]: line.split() for line in after.stdout.splitlines()
           if line and "with the reruns" not in line}
    assert row["fresh10"][2] == "15" and row["all"][1] == "36"
    assert "fresh10 with the reruns' decisions: 15/18 hits" in after.stdout
    assert "0 wrong refusal(s)" in after.stdout
    bad = subprocess.run([sys.executable, script, "--rerun", script], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "cannot read it as a bench_auto.py --json file" in bad.stderr
