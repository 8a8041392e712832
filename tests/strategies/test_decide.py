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
def test_output_level_shift_is_similar_and_keeps_the_backbone_frozen(pre, sp, rand, sr):
    # glyph-groups, 10/class, seeds 0-2: random-init features fail (0.26-0.32), the
    # pretrained ones close 50-68% of the room above chance; linear_probe won by 7-17
    # points where auto fine-tuned
    d = _decide(pre, sp, rand, sr)
    assert (d.cell, d.strategy, d.departs) == ("scarce + similar", "linear_probe", False)
    assert "of the room above chance" in d.reason and "as the table says" in d.reason


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
    assert _decide(0.80, 0.02, 0.45, 0.02, chance=0.5).strategy == "linear_probe"  # 70%
    t = AutoThresholds(similar_share=0.3)
    assert _decide(0.80, 0.02, 0.45, 0.02, thresholds=t).strategy == "linear_probe"


def test_no_significant_probe_refuses_with_a_pilot():
    # photo-shapes 80/class seed 1: p = 0.038 x 3 feature sets; partial:1 reached 0.46
    # (chance 0.25): the refusal names a pilot of finetune, which looks for the signal
    ev = {"pretrained": _ev(0.315, 0.26, 0.038), "random-init": _ev(0.263, 0.25, 0.33),
          "raw pixels": _ev(0.255, 0.27, 0.7)}
    d = _decide(0.315, 0.064, 0.272, 0.061, per_class=80, chance=0.25, evidence=ev)
    assert (d.strategy, d.pilot) == ("refuse", ("finetune",))
    assert d.reason.startswith("transfer learning not recommended: nothing to learn from "
                               "(scarce + dissimilar)")
    assert "a pilot of finetune looks for a signal the probes missed" in d.reason
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
