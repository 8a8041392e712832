"""auto's race (zoo_core.train._race): the table strategies' first epochs, the leader kept."""

from __future__ import annotations

import pytest

from zoo_core.data._data import scan_image_folder
from zoo_core.data._embedded import embedded_task
from zoo_core.train import finetune
from zoo_core.train._loop import stopping_after
from zoo_core.train._race import RACED, race_epoch, run_race
from zoo_core.train._utils import _Printer

QUIET = {"progress": False, "verbose": False}


def test_a_stopped_run_is_the_first_epochs_of_the_full_schedule(digits):
    _, full = finetune("zoonet_s", digits, strategy="partial:1", epochs=4, seed=0, **QUIET)
    with stopping_after(2):
        _, part = finetune("zoonet_s", digits, strategy="partial:1", epochs=4, seed=0,
                           **QUIET)
    assert [m.epoch for m in part.history] == [1, 2]
    # the schedule still spans 4 epochs: the same learning rates, the same figures
    for a, b in zip(part.history, full.history[:2], strict=True):
        assert (a.lr, a.val_acc, a.val_loss, a.train_loss) == (b.lr, b.val_acc, b.val_loss,
                                                               b.train_loss)
    # the stop is scoped: a run started after the block trains its epochs
    _, again = finetune("zoonet_s", digits, strategy="partial:1", epochs=4, seed=0, **QUIET)
    assert len(again.history) == 4 and again.final_val_acc == full.final_val_acc


@pytest.mark.parametrize(("fraction", "epochs", "k"),
                         [(0.07, 30, 2), (0.07, 10, 1), (0.01, 30, 1), (1.0, 30, 30),
                          (0.9, 1, 1)])
def test_race_epoch(fraction, epochs, k):
    assert race_epoch(fraction, epochs) == k


def test_the_leader_has_the_best_accuracy_then_the_lower_loss(tmp_path):
    folder = scan_image_folder(embedded_task("digits5-9", 4, cache=tmp_path, val_per_class=3),
                               warn=False)
    figures = {"linear_probe": (0.6, 0.9), "partial:1": (0.8, 0.7), "finetune": (0.8, 0.5),
               "scratch": (0.2, 1.6)}
    asked = []

    def race(strategy, data, fraction):
        asked.append((strategy, data is folder, fraction))
        acc, loss = figures[strategy]
        return {"epoch": 2, "epochs": 30, "val_acc": acc, "val_loss": loss}

    leader, info = run_race(folder, fraction=0.07, race=race, say=_Printer(False))
    assert leader == "finetune"  # ties partial:1 on accuracy, lower loss
    assert asked == [(s, True, 0.07) for s in RACED]
    assert info["candidates"] == list(RACED) and info["num_val"] == len(folder.val) == 15
    assert info["runs"]["scratch"]["val_acc"] == 0.2 and info["fraction"] == 0.07
    # an exact tie keeps the table's order
    figures.update({"partial:1": (0.8, 0.5)})
    assert run_race(folder, fraction=0.07, race=race, say=_Printer(False))[0] == "partial:1"


def test_auto_races_and_trains_the_leader_as_its_explicit_run(digits, tmp_path, monkeypatch):
    from zoo_core.registry._registry import reset_registry

    user = tmp_path / "r.toml"
    user.write_text("[auto]\nrace_fraction = 0.5\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    reset_registry()
    _, res = finetune("zoonet_s", digits, strategy="auto", epochs=4, seed=0, lr=0.02,
                      **QUIET)
    race = res.figures["race"]
    assert list(race["runs"]) == list(RACED) and race["fraction"] == 0.5
    assert race["runs"]["linear_probe"]["epochs"] == 1  # solved in one step: raced in full
    assert all(race["runs"][s]["epoch"] == 2 and race["runs"][s]["epochs"] == 4
               for s in RACED[1:])
    leader = max(RACED, key=lambda s: (race["runs"][s]["val_acc"],
                                       -race["runs"][s]["val_loss"]))
    assert res.strategy == res.figures["strategy"] == leader
    assert f"race on {res.num_val} validation images" in res.reason
    assert f"{leader} led" in res.reason and "the table says" in res.reason
    # the leader's run is its explicit run: same figures, epoch by epoch
    _, explicit = finetune("zoonet_s", digits, strategy=leader, epochs=4, seed=0, lr=0.02,
                           **QUIET)
    assert [m.val_acc for m in res.history] == [m.val_acc for m in explicit.history]
    # each racer trained as its explicit run would (the caller's lr included) up to epoch 2
    for s in RACED[1:]:
        with stopping_after(2):
            _, first = finetune("zoonet_s", digits, strategy=s, epochs=4, seed=0, lr=0.02,
                                **QUIET)
        assert (first.history[-1].val_acc, first.history[-1].val_loss) == \
            (race["runs"][s]["val_acc"], race["runs"][s]["val_loss"])
    # race_fraction = 0 (the default) turns the race off, and the run's race= overrides it
    # both ways
    user.write_text("[auto]\nrace_fraction = 0\n")
    reset_registry()
    _, res = finetune("zoonet_s", digits, strategy="auto", epochs=4, seed=0, **QUIET)
    assert "race" not in res.figures
    _, res = finetune("zoonet_s", digits, strategy="auto", epochs=4, seed=0, race=0.25,
                      **QUIET)
    assert res.figures["race"]["fraction"] == 0.25
    assert res.figures["race"]["runs"]["finetune"]["epoch"] == 1
    user.write_text("[auto]\nrace_fraction = 0.5\n")
    reset_registry()
    _, res = finetune("zoonet_s", digits, strategy="auto", epochs=4, seed=0, race=0,
                      **QUIET)
    assert "race" not in res.figures


@pytest.mark.parametrize("bad", [1.5, -0.1, "half", True])
def test_race_argument_is_checked(digits, bad):
    from zoo_core import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="race must be a share of the epochs"):
        finetune("zoonet_s", digits, strategy="auto", race=bad, **QUIET)
    with pytest.raises(InvalidArgumentError, match="nothing to race"):
        finetune("zoonet_s", digits, strategy="partial:1", race=0.5, **QUIET)


def test_pilots_and_racers_train_with_the_callers_settings(digits, monkeypatch):
    """auto's trial runs (the pilot's and the race's) get the caller's lr, recipe and
    stopping, not the defaults: a trial of another recipe would judge another run."""
    from zoo_core.train import _pipeline

    seen = {}

    def spy(name, real):
        def make(run, model, *args, **kw):
            seen[name] = kw
            return real(run, model, *args, **kw)
        return make

    monkeypatch.setattr(_pipeline, "make_pilot", spy("pilot", _pipeline.make_pilot))
    monkeypatch.setattr(_pipeline, "make_race", spy("race", _pipeline.make_race))
    finetune("zoonet_s", digits, strategy="auto", epochs=1, lr=0.02, early_stop=3,
             recipe={"smoothing": 0.1}, **QUIET)
    assert set(seen) == {"pilot", "race"}
    for kw in seen.values():
        assert (kw["lr"], kw["early_stop"], kw["recipe"].smoothing) == (0.02, 3, 0.1)
        assert kw["seed"] == 0 and kw["probe_solver"] == "lbfgs"
