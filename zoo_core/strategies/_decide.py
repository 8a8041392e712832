"""The ``auto`` decision: the seed's transfer-learning table as the frame, measurements as
the judge. Pure Python (no torch), so it can be read, tested and printed on its own.

The table (data size x similarity to the pretraining data) names a *cell*; the cell's
literal advice is printed next to the decision, and where the measurements say the cell's
advice is worse, the decision departs from it and says why:

| cell | the table says | auto does (measured; docs/auto.md) |
|---|---|---|
| scarce + similar | linear_probe | linear_probe if probe/gain reach frozen_enough/frozen_gain |
|  |  | (else finetune) |
| plenty + similar | linear_probe | finetune (pilot against partial:1) |
| plenty + dissimilar | scratch | pilot scratch against finetune |
| scarce + dissimilar | refuse | finetune; refuse only when nothing can be learnt |
| any cell, hard | | scarce: finetune; plenty: pilot finetune against scratch |

**Nothing to learn** is a significance test (``evidence``, from
:mod:`zoo_core.train._evidence`): the probes on pretrained, random-init and raw-pixel
features, each against a label-permutation baseline on the same features. Only when none
is above its baseline at ``p < [auto] refuse_p`` (0.01, divided by the number of feature
sets tested) is there nothing to learn; a probe
that is significant but within ``learnable_margin`` of chance means the task is **hard**,
and auto trains. Without ``evidence`` (older figures) the rule is the margin alone: both
probes within ``max(learnable_margin, 2 x spread)`` of chance.

**Similar** needs the gain (pretrained minus random-init probe) to be *significant*, at
least ``2 x`` its standard error (the probes' fold spreads over ``sqrt(folds)``), at least
``similar_gain`` in points, and to close at least ``similar_share`` of the *room*: the
errors the random-init probe leaves above chance, ``1 - max(random, chance)``. Random
labels have no significant gain (dissimilar), and a task where random features already do
most of the work (textures on glyph pretraining) is dissimilar too. Where a measurement is
within one standard error of a threshold it decides, the decision names a pilot of both
sides instead of trusting the threshold.

>>> d = decide(per_class=10, chance=0.2, probe_pretrained=0.9, probe_random=0.6, spread=0.05)
>>> d.cell, d.table_choice, d.strategy
('scarce + dissimilar', 'refuse', 'finetune')
>>> decide(per_class=10, chance=0.2, probe_pretrained=0.22, probe_random=0.21,
...        spread=0.05).strategy
'refuse'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from zoo_core.registry._catalog import AutoThresholds

TABLE = {
    ("scarce", "similar"): "linear_probe",
    ("plenty", "similar"): "linear_probe",
    ("plenty", "dissimilar"): "scratch",
    ("scarce", "dissimilar"): "refuse",
}


@dataclass(frozen=True)
class Decision:
    """What ``auto`` chose, the table cell the data fell in, and why."""

    strategy: str  # linear_probe | partial:K | finetune | scratch | refuse
    reason: str
    cell: str  # "scarce + similar", ...
    table_choice: str  # the seed table's literal advice for the cell
    departs: bool  # the decision differs from the table's advice
    pilot: tuple[str, ...] = ()  # candidates a short pilot should settle (first = default)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _near(value: float, threshold: float, sd: float) -> bool:
    return abs(value - threshold) < sd


def decide(*, per_class: float, chance: float, probe_pretrained: float | None,
           probe_random: float, spread: float = 0.0,
           thresholds: AutoThresholds | None = None,
           spread_pretrained: float | None = None, spread_random: float | None = None,
           folds: int = 5,
           evidence: Mapping[str, Mapping[str, float]] | None = None) -> Decision:
    """Decide from the measurements (see the module doc); ``probe_pretrained=None`` means
    the model has no pretrained weights. ``spread``: the fold spread of both probes
    (``spread_pretrained``/``spread_random`` where they differ); ``evidence``: feature set
    -> ``{"probe", "baseline", "p"}`` (:class:`zoo_core.train._evidence.Evidence`)."""
    t = thresholds or AutoThresholds()
    size = "plenty" if per_class >= t.plenty_per_class else "scarce"
    size_txt = (f"{per_class:.0f} images per class ({size}: plenty from "
                f"{t.plenty_per_class})")
    if probe_pretrained is None:
        return Decision("scratch", "the model has no pretrained weights, so there is nothing "
                        f"to transfer; {size_txt}", f"{size} + no pretrained weights",
                        "scratch", False)
    p, r = probe_pretrained, probe_random
    sp = spread if spread_pretrained is None else spread_pretrained
    sr = spread if spread_random is None else spread_random
    root = math.sqrt(max(folds, 1))
    gain = p - r
    gain_sd = math.sqrt(sp * sp + sr * sr) / root
    room = max(1.0 - max(r, chance), 1e-9)
    share = gain / room
    share_sd = gain_sd / room
    similar = (gain >= max(t.similar_gain, 2.0 * gain_sd) and share >= t.similar_share)
    near_similar = (gain >= t.similar_gain
                    and (_near(share, t.similar_share, share_sd)
                         or _near(gain, 2.0 * gain_sd, gain_sd)))
    sim = "similar" if similar else "dissimilar"
    cell = f"{size} + {sim}"
    table = TABLE[(size, sim)]
    figures = (f"probe {p:.3f} on pretrained vs {r:.3f} on random-init features (gain "
               f"{gain:+.3f} +- {gain_sd:.3f}, {share:.0%} of the room above the random "
               f"probe and chance; similar from {t.similar_share:.0%} and a significant "
               f"gain), chance {chance:.3f}")
    if evidence:
        tested = ", ".join(f"{name} {e['probe']:.3f} vs {e['baseline']:.3f} (p={e['p']:.2g})"
                           for name, e in evidence.items())
        sets = max([len(evidence)] + [int(e.get("tests", 0)) for e in evidence.values()])
        learnable = min(e["p"] for e in evidence.values()) * sets < t.refuse_p  # Bonferroni
        test_txt = (f"probes against a label-permutation baseline on the same features: "
                    f"{tested}; significant from p < {t.refuse_p:g} / {sets} "
                    "(Bonferroni over the feature sets)")
        nothing = f"no probe is significantly above its baseline ({test_txt})"
        hard = learnable and max(p, r, *(e["probe"] for e in evidence.values())) - chance \
            < t.learnable_margin
    else:
        margin = max(t.learnable_margin, 2.0 * spread)
        learnable = max(p, r) - chance >= margin
        hard = False
        test_txt = f"both probes within {margin:.2f} of chance"
        nothing = test_txt
    if not learnable:
        if size == "scarce":
            return Decision(
                "refuse",
                f"transfer learning not recommended: nothing to learn from -- {nothing}; "
                f"{figures}; and there are only {size_txt}. Check the labels, collect more "
                "data, or choose a strategy explicitly (--strategy finetune|partial:K|"
                "first:K|scratch, or --force)",
                cell, table, table != "refuse")
        return Decision(
            "scratch", f"{figures}: {nothing}, but with {size_txt} the whole network may "
            "still find what a linear probe cannot; pilot scratch against finetune", cell, table,
            table != "scratch", pilot=("scratch", "finetune"))
    if hard:
        if size == "plenty":
            return Decision("finetune", f"hard: something is learnt ({test_txt}) but every "
                            f"probe stays within {t.learnable_margin:.2f} of chance; "
                            f"{figures}, {size_txt}: pilot finetune against scratch",
                            cell, table, table != "finetune", pilot=("finetune", "scratch"))
        return Decision("finetune", f"hard: something is learnt ({test_txt}) but every probe "
                        f"stays within {t.learnable_margin:.2f} of chance; {figures}, "
                        f"{size_txt}: fine-tune the whole network from the pretrained init",
                        cell, table, table != "finetune")
    if size == "scarce" and similar:
        p_sd = sp / root
        frozen = p >= t.frozen_enough and gain >= t.frozen_gain
        near = (_near(p, t.frozen_enough, p_sd) and gain >= t.frozen_gain) or \
            (_near(gain, t.frozen_gain, gain_sd) and p >= t.frozen_enough)
        if frozen:
            return Decision("linear_probe", f"{figures}: the frozen features already separate "
                            f"the classes (probe >= {t.frozen_enough}) far better than random "
                            f"ones (gain >= {t.frozen_gain}); train a new head",
                            cell, table, False,
                            pilot=("linear_probe", "finetune") if near else ())
        short = (f"the probe stays below {t.frozen_enough}" if p < t.frozen_enough else
                 f"its gain over random features stays below {t.frozen_gain} (measured: a "
                 "near-perfect probe on little data with a modest gain did not make a frozen "
                 "head the best)")
        return Decision("finetune", f"{figures}: pretrained features help, but {short}, so "
                        "the backbone adapts too: "
                        "fine-tuning from the pretrained init measured better than the "
                        "table's frozen backbone (and than partial:1 where they differed)",
                        cell, table, True, pilot=("finetune", "linear_probe") if near else ())
    if size == "plenty" and similar:
        return Decision("finetune", f"{figures}, {size_txt}: with plenty of similar data, "
                        "fine-tuning everything beats a frozen backbone (the table's "
                        "linear_probe); pilot against "
                        + ("scratch (the similarity is within its spread of the threshold)"
                           if near_similar else "partial:1"), cell, table, True,
                        pilot=("finetune", "scratch" if near_similar else "partial:1"))
    if size == "plenty":
        if near_similar:
            return Decision("finetune", f"{figures}, {size_txt}: the similarity is within its "
                            "spread of the threshold; pilot finetune against scratch",
                            cell, table, True, pilot=("finetune", "scratch"))
        return Decision("scratch", f"{figures}, {size_txt}: pretrained features do not beat "
                        "random ones by enough; pilot scratch against finetune", cell, table,
                        False, pilot=("scratch", "finetune"))
    return Decision("finetune", f"{figures}, {size_txt}: the pretrained features do not "
                    "beat random ones by enough to call the data similar, but there is "
                    f"something to learn ({test_txt}) and a pretrained init still trains "
                    "better than scratch on little data (the table would refuse)",
                    cell, table, True)
