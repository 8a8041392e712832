"""auto: the decision table on its own, the measurements behind it, and end to end.

The decision is a pure function of the measured figures (zoo_core.strategies._decide),
tested cell by cell; the measurements are tested for what they promise (cross-validated, random-init
features with recalibrated BatchNorm, clear errors on data too small or degenerate to
measure); finetune(strategy="auto") is tested end to end on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zoo_core import InvalidArgumentError, TransferNotRecommendedError
from zoo_core.data._data import scan_image_folder
from zoo_core.data._embedded import TASKS, embedded_task
from zoo_core.registry._catalog import AutoThresholds
from zoo_core.strategies._decide import decide
from zoo_core.train import finetune, measure_transfer
from zoo_core.train._compare import score_auto
from zoo_core.train._measure import cv_probe, logme, recalibrate_batchnorm
from zoo_core_plugins.zoonet.digits import export_imagefolder

QUIET = {"progress": False, "verbose": False}


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- decide


@pytest.mark.parametrize(
    ("per_class", "pre", "rand", "strategy", "cell"),
    [
        (10, 0.99, 0.50, "partial:1", "scarce + similar"),  # 61% of the room above chance
        (10, 1.00, 0.69, "finetune", "scarce + dissimilar"),  # 39%: the demo cell
        (10, 0.96, 0.75, "finetune", "scarce + dissimilar"),
        (200, 0.96, 0.40, "finetune", "plenty + similar"),
        (200, 0.60, 0.70, "scratch", "plenty + dissimilar"),
        (10, 0.60, 0.70, "finetune", "scarce + dissimilar"),  # never refused on similarity
        (10, 0.22, 0.21, "refuse", "scarce + dissimilar"),  # nothing to learn
        (200, 0.22, 0.21, "refuse", "plenty + dissimilar"),  # ... unless a pilot finds some
    ],
)
def test_decide_cells(per_class, pre, rand, strategy, cell):
    d = decide(per_class=per_class, chance=0.2, probe_pretrained=pre, probe_random=rand,
               spread=0.03)
    assert (d.strategy, d.cell) == (strategy, cell)
    assert d.departs == (strategy != d.table_choice)
    assert f"{pre:.3f}" in d.reason and f"{rand:.3f}" in d.reason


def test_decide_refuses_only_when_both_probes_are_near_chance():
    # without evidence (older figures) the spread widens "near chance"
    assert decide(per_class=10, chance=0.2, probe_pretrained=0.35, probe_random=0.3,
                  spread=0.1).strategy == "refuse"
    assert decide(per_class=10, chance=0.2, probe_pretrained=0.35, probe_random=0.3,
                  spread=0.02).strategy == "finetune"
    assert decide(per_class=10, chance=0.2, probe_pretrained=0.21, probe_random=0.5,
                  spread=0.02).strategy == "finetune"


def _ev(probe, baseline, p):
    return {"probe": probe, "baseline": baseline, "p": p}


def test_decide_refuses_only_on_evidence_and_says_what_was_tested():
    # the photo task: probe 0.338 vs chance 0.25 with a wide fold spread was refused
    # by the margin rule; a significant probe makes it "hard", and auto trains
    hard = {"pretrained": _ev(0.338, 0.25, 0.002), "random-init": _ev(0.30, 0.26, 0.1),
            "raw pixels": _ev(0.27, 0.25, 0.3)}
    d = decide(per_class=80, chance=0.25, probe_pretrained=0.338, probe_random=0.30,
               spread=0.16, evidence=hard)
    assert d.strategy == "finetune" and d.reason.startswith("scarce + dissimilar, hard:")
    assert "pretrained 0.338 vs 0.250 (p=0.002)" in d.reason
    # plenty and hard: a pilot settles finetune against scratch
    d = decide(per_class=300, chance=0.25, probe_pretrained=0.338, probe_random=0.30,
               spread=0.16, evidence=hard)
    assert d.strategy == "finetune" and d.pilot == ("finetune", "scratch")
    # only the raw pixels are significant: still something to learn
    raw = {**hard, "pretrained": _ev(0.26, 0.25, 0.4), "raw pixels": _ev(0.40, 0.25, 1e-4)}
    assert decide(per_class=20, chance=0.25, probe_pretrained=0.26, probe_random=0.30,
                  spread=0.05, evidence=raw).strategy == "finetune"
    # none below p = 0.01: refused, and the message names every probe and p-value
    # (p = 0.005 is below 0.01, but not below 0.01 / 3: three feature sets were tested)
    none = {"pretrained": _ev(0.31, 0.25, 0.005), "random-init": _ev(0.30, 0.26, 0.1),
            "raw pixels": _ev(0.27, 0.25, 0.3)}
    d = decide(per_class=20, chance=0.25, probe_pretrained=0.31, probe_random=0.30,
               spread=0.01, evidence=none)
    assert d.strategy == "refuse"
    for text in ("label-permutation baseline", "pretrained 0.310 vs 0.250 (p=0.005)",
                 "random-init 0.300 vs 0.260 (p=0.1)", "raw pixels 0.270 vs 0.250 (p=0.3)",
                 "p < 0.01 / 3 (Bonferroni"):
        assert text in d.reason
    # the threshold is read from [auto] refuse_p
    loose = AutoThresholds(refuse_p=0.05)
    assert decide(per_class=20, chance=0.25, probe_pretrained=0.31, probe_random=0.30,
                  spread=0.01, evidence=none, thresholds=loose).strategy == "finetune"


def test_similarity_has_a_scale():
    # random labels: a gain of +0.107 inside its spread is not "similar" (was: similar)
    d = decide(per_class=10, chance=0.2, probe_pretrained=0.307, probe_random=0.20,
               spread=0.13, evidence={"pretrained": _ev(0.307, 0.2, 0.05)})
    assert d.cell == "scarce + dissimilar" and d.strategy == "refuse"
    # textures: random features already close most of the room -> dissimilar
    d = decide(per_class=100, chance=0.2, probe_pretrained=0.964, probe_random=0.824,
               spread_pretrained=0.023, spread_random=0.046)
    assert d.cell == "plenty + dissimilar" and "of the room" in d.reason
    # glyph classes regrouped (saved tuning figures, glyph-groups 100/class would be alike):
    # random features fail, pretrained ones close 63% of the room above chance -> similar
    d = decide(per_class=100, chance=0.2, probe_pretrained=0.813, probe_random=0.283,
               spread_pretrained=0.102, spread_random=0.128)
    assert d.cell == "plenty + similar" and d.pilot == ("finetune", "partial:1")


def test_near_a_threshold_runs_the_pilot():
    # share 0.44 of the room above chance, one standard error (0.04) from similar_share
    # 0.45: pilot both sides
    d = decide(per_class=100, chance=0.2, probe_pretrained=0.95, probe_random=0.60,
               spread_pretrained=0.03, spread_random=0.06)
    assert d.cell == "plenty + dissimilar" and d.pilot == ("finetune", "scratch")
    d = decide(per_class=60, chance=0.2, probe_pretrained=0.95, probe_random=0.60,
               spread_pretrained=0.03, spread_random=0.06)
    assert d.strategy == "finetune" and d.pilot == ("finetune", "linear_probe")
    # just above it (0.46): early stages frozen by default, pilot against finetune
    d = decide(per_class=60, chance=0.2, probe_pretrained=0.95, probe_random=0.58,
               spread_pretrained=0.03, spread_random=0.06)
    assert d.strategy == "partial:1" and d.pilot == ("partial:1", "finetune")
    # far from every threshold: no pilot
    d = decide(per_class=60, chance=0.2, probe_pretrained=1.0, probe_random=0.40, spread=0.0)
    assert d.strategy == "partial:1" and d.pilot == ()


def test_decide_without_pretrained_weights_is_scratch():
    d = decide(per_class=10, chance=0.2, probe_pretrained=None, probe_random=0.9)
    assert d.strategy == "scratch" and "no pretrained weights" in d.reason


def test_decide_reads_thresholds():
    # share 0.44: dissimilar at the default 0.45, similar from 0.4
    assert decide(per_class=10, chance=0.2, probe_pretrained=0.85, probe_random=0.5
                  ).strategy == "finetune"
    t = AutoThresholds(similar_share=0.4)
    assert decide(per_class=10, chance=0.2, probe_pretrained=0.85, probe_random=0.5,
                  thresholds=t).strategy == "partial:1"
    t = AutoThresholds(plenty_per_class=5, similar_share=0.4)
    assert decide(per_class=10, chance=0.2, probe_pretrained=0.85, probe_random=0.5,
                  thresholds=t).cell == "plenty + similar"


def test_registry_auto_keys_are_validated(tmp_path, monkeypatch):
    from zoo_core import ConfigError
    from zoo_core.registry._registry import get_registry, reset_registry

    user = tmp_path / "r.toml"
    user.write_text("[auto]\nsimilar_gain = 0.2\npilot_min_per_class = 30\n"
                    "similar_share = 0.6\nrefuse_p = 0.05\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    reset_registry()
    auto = get_registry().catalog.auto
    assert (auto.similar_gain, auto.pilot_min_per_class) == (0.2, 30)
    assert (auto.similar_share, auto.refuse_p) == (0.6, 0.05)
    user.write_text("[auto]\nrefuse_p = 2\n")
    reset_registry()
    with pytest.raises(ConfigError, match="auto.refuse_p"):
        get_registry()
    user.write_text("[auto]\nsimilar_share = 3\n")
    reset_registry()
    with pytest.raises(ConfigError, match="auto.similar_share"):
        get_registry()
    # the keys of the rule that similar_share replaced are gone, and say so
    user.write_text("[auto]\nfrozen_enough = 0.9\n")
    reset_registry()
    with pytest.raises(ConfigError, match="auto.frozen_enough.*unknown key"):
        get_registry()


def test_score_auto():
    accs = {"linear_probe": 0.5, "finetune": 0.9}
    assert score_auto("finetune", accs, 0.2) and not score_auto("linear_probe", accs, 0.2)
    assert score_auto("refused", {"a": 0.25}, 0.2)
    assert not score_auto("refused", accs, 0.2)


# ----------------------------------------------------------------------------- measure


def test_cv_probe_and_logme_tell_signal_from_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    signal = rng.normal(size=(48, 16)) + np.eye(4)[y] @ rng.normal(size=(4, 16)) * 3
    noise = rng.normal(size=(48, 16))
    good, bad = cv_probe(signal, y), cv_probe(noise, y)
    assert good.mean > 0.9 > 0.5 > bad.mean and good.folds == 5 and good.repeats == 3
    assert logme(signal, y) > logme(noise, y)
    # NaN rows and constant columns do not crash the probe
    signal[0, :] = np.nan
    signal[:, 3] = 7.0
    assert cv_probe(signal, y).mean > 0.8
    const = cv_probe(np.ones((48, 5)), y)
    assert const.mean == pytest.approx(0.25, abs=0.1)


def test_cv_probe_needs_two_images_per_class():
    with pytest.raises(InvalidArgumentError, match="smallest class has 1"):
        cv_probe(np.zeros((3, 2)), np.array([0, 1, 1]))


def test_recalibrated_batchnorm_holds_the_data_statistics(digits):
    import zoo_core
    from zoo_core.data._data import ImageDataset, make_transforms

    model = zoo_core.build_model("zoonet_s", 5, "scratch")
    bn = model.stem[1]
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    folder = scan_image_folder(digits, warn=False)
    ds = ImageDataset(folder.train, make_transforms(model)[1])
    was = model.training
    seen = []
    hook = model.stem[0].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    recalibrate_batchnorm(model, ds, range(len(ds)), batch_size=len(ds), device="cpu")
    hook.remove()
    want = seen[0].mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, want, atol=1e-5)
    assert bn.momentum == 0.1 and model.training is was  # restored


def test_measure_transfer_figures(digits):
    folder = scan_image_folder(digits, warn=False)
    m = measure_transfer("zoonet_s", folder, with_logme=True)
    assert m.num_classes == 5 and m.per_class == 6 and m.train_chance == pytest.approx(0.2)
    # chance is the validation split's majority rate (what a constant guess scores there)
    val = np.bincount([lab for _, lab in folder.val])
    assert m.chance == pytest.approx(val.max() / val.sum()) != m.train_chance
    assert 0 <= m.pretrained.mean <= 1 and 0 <= m.random.mean <= 1
    # digits: the pretrained probe is far above its permuted-label baseline, which settles
    # "something to learn"; the other sets are not needed (nor the raw-pixel probe)
    assert set(m.evidence) == {"pretrained"} and m.raw is None
    assert m.evidence["pretrained"]["probe"] == m.pretrained.mean
    assert m.evidence["pretrained"]["p"] < 0.01 / 3 and m.learnable[0] == "pretrained"
    assert len(m.random_each) == 2 and m.logme_pretrained is not None
    assert m.gain == pytest.approx(m.pretrained.mean - m.random.mean)


def test_measure_refuses_one_image_per_class_with_counts(tmp_path):
    src = export_imagefolder(tmp_path / "one", classes=(5, 6), per_class=1)
    folder = scan_image_folder(src, warn=False)
    with pytest.raises(InvalidArgumentError, match=r"at least 2 training images.*5: 1"):
        measure_transfer("zoonet_s", folder)
    # an explicit strategy still trains
    _, res = finetune("zoonet_s", src, strategy="linear_probe", epochs=1, **QUIET)
    assert res.strategy == "linear_probe"


def test_constant_images_are_measured_not_crashed(tmp_path):
    for c in ("a", "b"):
        for i in range(6):
            p = tmp_path / "const" / c / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), (90, 90, 90)).save(p)
    folder = scan_image_folder(tmp_path / "const", warn=False)
    m = measure_transfer("zoonet_s", folder)
    assert any("constant" in p for p in m.problems)
    with pytest.raises(TransferNotRecommendedError, match="constant"):
        finetune("zoonet_s", tmp_path / "const", strategy="auto", epochs=1, **QUIET)


# ----------------------------------------------------------------------------- end to end


def test_auto_end_to_end_prints_cell_figures_and_choice(digits, capsys):
    _, res = finetune("zoonet_s", digits, strategy="auto", epochs=1, progress=False)
    assert res.requested_strategy == "auto" and res.strategy != "refuse"
    fig = res.figures
    assert fig["decision"]["cell"].startswith("scarce + ")
    assert fig["strategy"] == res.strategy and fig["num_train"] == 30
    out = capsys.readouterr().out
    assert "table cell  scarce + " in out and f"decision    {res.strategy}" in out
    assert "random-init features" in out
    assert "evidence    each probe against a label-permutation baseline" in out


def test_auto_refuses_random_labels_and_force_overrides(tmp_path):
    # 40 per class: 200 images bound the pretrained probe below chance + 10 points
    root = embedded_task("random-labels", 40, cache=tmp_path, val_per_class=4)
    with pytest.raises(TransferNotRecommendedError, match="nothing to learn") as info:
        finetune("zoonet_s", root, strategy="auto", epochs=1, **QUIET)
    figures = info.value.figures
    assert figures["decision"]["strategy"] == "refuse"
    # all three feature sets were tested against permuted labels, and the message says so
    assert set(figures["evidence"]) == {"pretrained", "random-init", "raw pixels"}
    assert figures["raw"] is not None and all(e["p"] * 3 >= 0.01
                                              for e in figures["evidence"].values())
    for name, e in figures["evidence"].items():
        assert f"{name} {e['probe']:.3f} vs {e['baseline']:.3f} (p={e['p']:.2g})" in \
            str(info.value)
    assert "label-permutation baseline" in str(info.value)
    assert "upper bound (95%, one-sided)" in str(info.value) and "rules out a gain of 0.10" \
        in str(info.value)
    _, res = finetune("zoonet_s", root, strategy="auto", force=True, epochs=1, **QUIET)
    assert res.strategy == "finetune" and res.forced and "forced" in res.reason


def test_holdout_test_counts_the_holdout_majority_and_the_candidates():
    from zoo_core.train._evidence import holdout_test

    # 64 held-out images, 4 balanced classes: 0.47 is far above 0.25, 0.30 is not
    assert holdout_test({"finetune": 0.47}, [0, 1, 2, 3] * 16)["p"] < 1e-3
    ev = holdout_test({"finetune": 0.30}, [0, 1, 2, 3] * 16)
    assert ev["p"] > 0.01 and ev["chance"] == 0.25 and ev["n"] == 64
    # ... nor can 64 images rule out 0.35 (10 points over chance): 0.30 + 1.645 x 0.057;
    # 640 images can (0.30 + 1.645 x 0.018)
    assert ev["upper"] == pytest.approx(0.30 + 1.6449 * (0.21 / 64) ** 0.5, abs=1e-3)
    assert holdout_test({"finetune": 0.30}, [0, 1, 2, 3] * 160)["upper"] < 0.35
    # chance is the holdout's majority rate: 0.47 on a holdout that is half class 0 is not
    assert holdout_test({"finetune": 0.47}, [0] * 32 + [1, 2, 3] * 11)["p"] > 0.5
    # two candidates: the best of two counts as two tests (Bonferroni)
    one = holdout_test({"a": 0.40}, [0, 1, 2, 3] * 16)
    two = holdout_test({"a": 0.40, "b": 0.20}, [0, 1, 2, 3] * 16)
    assert two["p"] == pytest.approx(2 * one["p"]) and two["tests"] == 2


def test_refusal_pilots_first_where_images_can_be_held_out(tmp_path, monkeypatch):
    from zoo_core.registry._registry import reset_registry
    from zoo_core.train._auto import _decide
    from zoo_core.train._utils import _Printer

    user = tmp_path / "r.toml"
    user.write_text("[auto]\npilot_min_per_class = 5\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    reset_registry()
    root = embedded_task("random-labels", 40, cache=tmp_path / "c", val_per_class=4)
    folder = scan_image_folder(root, warn=False)
    seen = []

    def pilot(acc):
        def run(strategy, data, epochs):
            seen.append((strategy, len(data.train), len(data.val), epochs))
            return acc
        return run

    kw = {"weights": "default", "seed": 0, "force": False, "device": "cpu", "num_workers": 0,
          "say": _Printer(False), "epochs": 8}
    # no probe is significant: a pilot of finetune on an 80/20 split for the full epochs,
    # scored on the held-out fifth and the 20 validation images; at chance on 60 images it
    # finds nothing either and rules out 10 points, and auto refuses saying so
    with pytest.raises(TransferNotRecommendedError, match="found nothing either") as info:
        _decide("zoonet_s", folder, pilot=pilot(0.2), **kw)
    assert seen == [("finetune", 160, 60, 8)]
    ev = info.value.figures["pilot"]["evidence"]
    assert ev["p"] >= 0.01 and ev["n"] == 60 and ev["upper"] < 0.2 + 0.10
    assert "nothing to learn from (scarce + dissimilar)" in str(info.value)
    assert "rules out a gain of 0.10 over chance" in str(info.value)
    # a pilot neither significant nor ruling out 10 points (0.27 on 60 images at chance
    # 0.2: p 0.09, upper bound 0.36): a refusal would rest on no evidence, auto trains
    seen.clear()
    strategy, reason, forced, fig = _decide("zoonet_s", folder, pilot=pilot(0.27), **kw)
    assert (strategy, forced) == ("finetune", False) and seen == [("finetune", 160, 60, 8)]
    assert "undecided" in reason and "does not rule out a gain of 0.10" in reason
    assert fig["pilot"]["evidence"]["p"] >= 0.01
    assert fig["pilot"]["evidence"]["upper"] >= 0.30
    # a pilot far above the holdout's chance is evidence the probes missed: auto trains
    strategy, reason, forced, fig = _decide("zoonet_s", folder, pilot=pilot(1.0), **kw)
    assert (strategy, forced) == ("finetune", False)
    assert "the probes found nothing significant, but the pilot" in reason
    assert fig["pilot"]["evidence"]["p"] < 0.01 and fig["strategy"] == "finetune"
    # too few images to hold out: refused without a pilot, and the message says why
    user.write_text("[auto]\npilot_min_per_class = 50\n")
    reset_registry()
    seen.clear()
    with pytest.raises(TransferNotRecommendedError, match="pilot not run: fewer than 50"):
        _decide("zoonet_s", folder, pilot=pilot(1.0), **kw)
    assert seen == []


def test_auto_without_pretrained_weights_is_scratch(digits):
    _, res = finetune("zoonet_s", digits, strategy="auto", weights=None, epochs=1, **QUIET)
    assert res.strategy == "scratch" and "no pretrained weights" in res.reason


def test_too_few_images_to_rule_out_a_gain_train_instead_of_refusing(tmp_path):
    # random labels, 6 per class: no probe is significant, but 30 images cannot bound the
    # pretrained probe below chance + 10 points, so a refusal would rest on no evidence
    from zoo_core.train._auto import _decide
    from zoo_core.train._utils import _Printer

    root = embedded_task("random-labels", 6, cache=tmp_path / "c", val_per_class=4)
    folder = scan_image_folder(root, warn=False)
    strategy, reason, forced, fig = _decide(
        "zoonet_s", folder, weights="default", seed=0, force=False, device="cpu",
        num_workers=0, say=_Printer(False), epochs=2, pilot=None)
    assert (strategy, forced) == ("finetune", False)
    assert "undecided" in reason and "cannot be ruled out" in reason
    assert all(e["p"] * 3 >= 0.01 for e in fig["evidence"].values())
    assert fig["decision"]["strategy"] == "finetune" and fig["evidence"]["pretrained"]["n"] == 30


def test_refused_run_leaves_no_run_folder(tmp_path):
    root = embedded_task("random-labels", 40, cache=tmp_path / "c", val_per_class=4)
    with pytest.raises(TransferNotRecommendedError):
        finetune("zoonet_s", root, strategy="auto", epochs=1, out=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("task", ["digits5-9", "noise-bands", "random-labels"])
def test_embedded_tasks_are_deterministic_and_idempotent(tmp_path, task):
    a = embedded_task(task, 3, cache=tmp_path / "a", val_per_class=2)
    b = embedded_task(task, 3, cache=tmp_path / "b", val_per_class=2)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert len(files_a) == 5 * (3 + 2)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    mtime = (a / files_a[0]).stat().st_mtime_ns
    assert embedded_task(task, 3, cache=tmp_path / "a", val_per_class=2) == a
    assert (a / files_a[0]).stat().st_mtime_ns == mtime


def test_unknown_task_suggests():
    with pytest.raises(InvalidArgumentError, match="did you mean digits5-9"):
        embedded_task("digits5-8")
    assert "textures" in TASKS
