"""auto's decision rules on the figures the issue-21 tuning part measured (saved in
benchmarks/results/bench_auto_issue21_tuning.json): decide() is pure, so each rule is
tested on the figure dicts themselves, and its reason names the table's cell."""

from __future__ import annotations

import pytest

from zoo_core.registry._catalog import AutoThresholds
from zoo_core.strategies._decide import decide


def _ev(probe, baseline, p, tests=3):
    return {"probe": probe, "baseline": baseline, "p": p, "tests": tests}


def _decide(pre, sp, rand, sr, *, per_class=10, chance=0.2, evidence=None, **kw):
    return decide(per_class=per_class, chance=chance, probe_pretrained=pre,
                  probe_random=rand, spread_pretrained=sp, spread_random=sr, folds=5,
                  evidence=evidence or {"pretrained": _ev(pre, chance, 1e-20)}, **kw)


@pytest.mark.parametrize(("pre", "sp", "rand", "sr"), [
    (0.813, 0.102, 0.283, 0.128), (0.720, 0.098, 0.317, 0.106), (0.800, 0.132, 0.257, 0.130)])
def test_output_level_shift_is_similar_and_keeps_the_early_backbone_frozen(pre, sp, rand, sr):
    # glyph-groups, 10/class, seeds 0-2: random-init features fail (0.26-0.32), the
    # pretrained ones close 50-68% of the room above chance; linear_probe won by 7-17
    # points where auto fine-tuned. Since stop 21 scarce + similar trains partial:1 (the
    # last stage too: input-level shifts of known glyphs lost up to 21 points frozen),
    # which departs from the table's linear_probe and says so
    d = _decide(pre, sp, rand, sr)
    assert (d.cell, d.strategy, d.departs) == ("scarce + similar", "partial:1", True)
    assert d.table_choice == "linear_probe"
    assert "of the room above chance" in d.reason and "keep the early stages frozen" in d.reason


@pytest.mark.parametrize(("pre", "sp", "rand", "sr"), [
    (0.847, 0.088, 0.693, 0.107),  # textures: the pretraining adds 19% of the room
    (0.873, 0.106, 0.667, 0.115),  # textures 26%
    (0.833, 0.094, 0.630, 0.161),  # digits with inverted contrast: 25%
    (0.900, 0.089, 0.630, 0.132),  # ... 34%
    (0.980, 0.040, 0.653, 0.153),  # digits 5-9: 41%, near-perfect probe but random
])                                 # features already do most of it
def test_random_features_doing_most_of_it_is_dissimilar_and_finetunes(pre, sp, rand, sr):
    d = _decide(pre, sp, rand, sr)
    assert (d.cell, d.strategy, d.table_choice) == ("scarce + dissimilar", "finetune", "refuse")
    assert d.reason.startswith("scarce + dissimilar: ") and "the table would refuse" in d.reason


def test_similar_share_is_relative_to_chance():
    # the same gain closes more of the room above chance when chance is high
    assert _decide(0.80, 0.02, 0.43, 0.02, chance=0.2).cell == "scarce + similar"  # 46%
    assert _decide(0.80, 0.02, 0.45, 0.02, chance=0.2).strategy == "finetune"  # 44%
    assert _decide(0.80, 0.02, 0.45, 0.02, chance=0.5).strategy == "partial:1"  # 70%
    t = AutoThresholds(similar_share=0.3)
    assert _decide(0.80, 0.02, 0.45, 0.02, thresholds=t).strategy == "partial:1"


def test_no_significant_probe_refuses_with_a_pilot():
    # photo-shapes 80/class seed 1: p = 0.038 x 3 feature sets; partial:1 reached 0.46
    # (chance 0.25): the refusal names a pilot of finetune, which looks for the signal
    ev = {"pretrained": _ev(0.315, 0.26, 0.038), "random-init": _ev(0.263, 0.25, 0.33),
          "raw pixels": _ev(0.255, 0.27, 0.7)}
    d = _decide(0.315, 0.064, 0.272, 0.061, per_class=80, chance=0.25, evidence=ev)
    assert (d.strategy, d.pilot) == ("refuse", ("finetune",))
    assert d.reason.startswith("transfer learning not recommended: nothing to learn from "
                               "(scarce + dissimilar)")
    assert "a pilot of finetune (the full epochs) looks for a signal the probes missed" \
        in d.reason and "refuses only if it finds none and rules out a gain of 0.10" in d.reason
    assert "50 images per class to hold out" in d.reason
    # plenty: the pilot tries scratch as well (the plenty + dissimilar cell's advice)
    d = _decide(0.315, 0.064, 0.272, 0.061, per_class=150, chance=0.25, evidence=ev)
    assert (d.strategy, d.pilot) == ("refuse", ("scratch", "finetune"))
    assert d.reason.startswith("transfer learning not recommended: nothing to learn from "
                               "(plenty + dissimilar)")
    # random labels 10/class: the same refusal (too few images to pilot: the caller refuses)
    ev = {"pretrained": _ev(0.213, 0.2, 0.4), "random-init": _ev(0.13, 0.24, 1.0),
          "raw pixels": _ev(0.17, 0.21, 0.7)}
    assert _decide(0.213, 0.12, 0.147, 0.097, evidence=ev).strategy == "refuse"


def test_a_refusal_needs_a_bound_that_rules_out_a_ten_point_gain():
    # shapes on photos, 25 per class (4 classes): no probe significant, but on 100 images
    # the pretrained probe's 95% upper bound (0.297 + 1.645 x 0.046 = 0.372) does not rule
    # out chance 0.25 + 0.10: auto trains (finetune: scarce), and says why
    ev = {"pretrained": {**_ev(0.297, 0.265, 0.24), "n": 100},
          "random-init": {**_ev(0.233, 0.25, 0.65), "n": 100},
          "raw pixels": {**_ev(0.267, 0.25, 0.41), "n": 100}}
    d = _decide(0.297, 0.05, 0.24, 0.05, per_class=25, chance=0.25, evidence=ev)
    assert (d.strategy, d.pilot, d.cell) == ("finetune", (), "scarce + dissimilar")
    assert "undecided" in d.reason and "is 0.372" in d.reason
    assert "a gain of 0.10 over chance 0.250 cannot be ruled out" in d.reason
    # the same probe on 800 images: the bound (0.324) rules it out, and the refusal says so
    ev800 = {k: {**e, "n": 800} for k, e in ev.items()}
    d = _decide(0.297, 0.05, 0.24, 0.05, per_class=200, chance=0.25, evidence=ev800)
    assert d.strategy == "refuse" and "upper bound (95%, one-sided) 0.324 rules out" in d.reason
    # plenty and undecided: pilot finetune against scratch
    d = _decide(0.297, 0.05, 0.24, 0.05, per_class=120, chance=0.25, evidence=ev)
    assert (d.strategy, d.pilot) == ("finetune", ("finetune", "scratch"))
    # a looser level or a smaller gain to rule out changes the verdict, as configured
    t = AutoThresholds(refuse_gain=0.2)
    assert _decide(0.297, 0.05, 0.24, 0.05, per_class=25, chance=0.25, evidence=ev,
                   thresholds=t).strategy == "refuse"
    # identical images carry nothing, however few: refused without a bound
    blank = {**ev, "raw pixels": {**ev["raw pixels"], "constant": True}}
    d = _decide(0.297, 0.05, 0.24, 0.05, per_class=25, chance=0.25, evidence=blank)
    assert d.strategy == "refuse" and "every image is the same (constant pixels)" in d.reason


@pytest.mark.parametrize("value", [0, 1, 1.5])
def test_refuse_bound_p_must_be_a_confidence_level(tmp_path, monkeypatch, value):
    from zoo_core.errors import ConfigError
    from zoo_core.registry._catalog import load_catalog

    user = tmp_path / "r.toml"
    user.write_text(f"[auto]\nrefuse_bound_p = {value}\n")
    with pytest.raises(ConfigError, match="auto.refuse_bound_p"):
        load_catalog(user)
