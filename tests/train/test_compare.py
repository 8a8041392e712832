"""zoo finetune --compare: the four cells of the table, every strategy, auto's choice."""

from __future__ import annotations

import pytest
import torch

from zoo_core.train._compare import run_default


@pytest.mark.slow
def test_compare_prints_every_strategy_and_auto_per_cell(capsys):
    before = torch.get_num_threads()
    cells = (("scarce + similar", "digits5-9", 4, 1),
             ("scarce, nothing to learn", "random-labels", 4, 1))
    rows = run_default(cells=cells)  # one thread inside, restored after
    assert torch.get_num_threads() == before
    assert [r["label"] for r in rows] == ["scarce + similar", "scarce, nothing to learn"]
    for r in rows:
        assert set(r["accuracy"]) == {"linear_probe", "partial:1", "finetune", "scratch"}
        assert r["auto"] in {*r["accuracy"], "refused"} and isinstance(r["hit"], bool)
    out = capsys.readouterr().out
    assert out.count("linear_probe") >= 2 and "auto" in out and "cells within 2 points" in out
    assert ("✓" in out) or ("✗" in out)


@pytest.mark.parametrize(("value", "needle"), [
    ("first:0", "first:K needs K >= 1"),
    ("linear_probe,auto", "leave 'auto' out"),
    ("stage:x", "unknown strategy 'stage:x'"),
    (" , ", "at least one strategy"),
])
def test_compare_strategy_list_is_checked_before_anything_runs(capsys, value, needle):
    from zoo_core.cli import main

    assert main(["finetune", "--compare", "--strategy", value]) != 0
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and needle in err and err.count("\n") == 1


def test_surgical_strategy_finetunes_through_the_pipeline(digits):
    from zoo_core.train import finetune

    model, res = finetune("zoonet_s", digits, strategy="stage:0", epochs=1, progress=False,
                          verbose=False)
    assert res.strategy == "stage:0" and model.zoo.strategy == "stage:0"
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("head.", "stages.0.", "stem.")) for n in trained)


@pytest.mark.slow
def test_compare_runs_the_strategies_asked_for_and_auto_s_choice(capsys):
    cells = (("scarce + similar", "digits5-9", 4, 1),)
    rows = run_default(cells=cells, strategies=("first:1", "stage:0"))
    accs = rows[0]["accuracy"]
    assert {"first:1", "stage:0"} <= set(accs)
    assert rows[0]["auto"] in {*accs, "refused"}  # auto's pick is trained when not listed
    out = capsys.readouterr().out
    assert "first:1" in out and "stage:0" in out


@pytest.mark.parametrize("strategy", ["linear_probe", "finetune"])
def test_accuracy_on_reproduces_the_runs_own_validation(digits, strategy):
    """The benchmark's test split is scored by ``accuracy_on``: on the run's validation
    images it must give exactly the run's own final validation accuracy (same transform,
    same weights; linear_probe's run evaluates cached features, this the whole model)."""
    from zoo_core.data._data import scan_image_folder
    from zoo_core.train import finetune
    from zoo_core.train._compare import accuracy_on

    folder = scan_image_folder(digits, seed=0, warn=False)
    model, res = finetune("zoonet_s", folder, strategy=strategy, epochs=2, seed=0,
                          progress=False, verbose=False)
    assert accuracy_on(model, folder.val) == pytest.approx(res.final_val_acc, abs=1e-9)


def test_run_cell_scores_every_strategy_on_a_disjoint_test_split():
    from zoo_core.data._data import scan_image_folder
    from zoo_core.data._embedded import embedded_task
    from zoo_core.train._compare import _split_test, run_cell

    row = run_cell("zoonet_s", "digits5-9", 4, epochs=1, seed=0, with_auto=False,
                   strategies=("linear_probe", "partial:1"), val_per_class=3,
                   test_per_class=6)
    assert (row["num_val"], row["num_test"]) == (5 * 3, 5 * 6)
    assert set(row["accuracy"]) == set(row["val_accuracy"]) == {"linear_probe", "partial:1"}
    assert all(0.0 <= a <= 1.0 for a in row["accuracy"].values())
    # each run's per-epoch validation curve, ending at its final validation figure
    for s, curve in row["curves"].items():
        assert len(curve["val_acc"]) == len(curve["val_loss"]) == len(curve["seconds"]) == 1
        assert 0 < curve["seconds"][0] <= row["seconds"][s]
        assert curve["val_acc"][-1] == row["val_accuracy"][s]
    folder = scan_image_folder(embedded_task("digits5-9", 4, seed=0, val_per_class=9),
                               seed=0, warn=False)
    kept, test = _split_test(folder, 3)
    assert not {p for p, _ in kept.val} & {p for p, _ in test}
    assert sorted(kept.val + test) == sorted(folder.val) and kept.train == folder.train
