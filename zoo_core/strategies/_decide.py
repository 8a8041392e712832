"""The ``auto`` decision: the seed's transfer-learning table as the frame, measurements as
the judge. Pure Python (no torch), so it can be read, tested and printed on its own.

The table (data size x similarity to the pretraining data) names a *cell*; the cell's
literal advice is printed next to the decision, and where the measurements say the cell's
advice is worse, the decision departs from it and says why:

| cell | the table says | auto does (measured; docs/auto.md) |
|---|---|---|
| scarce + similar | linear_probe | partial:1 (since stop 21: the last stage adapts too) |
| plenty + similar | linear_probe | finetune (pilot against partial:1) |
| plenty + dissimilar | scratch | pilot scratch against finetune |
| scarce + dissimilar | refuse | finetune; refuse only when nothing can be learnt |
| any cell, hard | | scarce: finetune; plenty: pilot finetune against scratch |

**Nothing to learn** is a significance test (``evidence``, from
:mod:`zoo_core.train._evidence`): the probes on pretrained, random-init and raw-pixel
features, each against a label-permutation baseline on the same features. When none
is above its baseline at ``p < [auto] refuse_p`` (0.01, divided by the number of feature
sets tested), the probes found nothing; on a sample of a few hundred images a linear
probe cannot tell a weak signal from none, so the decision is ``refuse`` *with a pilot*:
where there are images enough to hold out (``[auto] pilot_min_per_class``), the caller
trains the pilot's candidates for the full epochs on a holdout split and refuses only when
none of them beats chance significantly either *and* the best one's upper confidence
bound rules out a gain of ``refuse_gain`` (:func:`zoo_core.train._auto._decide`). A probe
that is significant but within ``learnable_margin`` of chance means the task is **hard**,
and auto trains. A refusal also needs evidence that there is little to gain: the
pretrained probe's one-sided upper confidence bound (at ``[auto] refuse_bound_p``, 5%;
binomial over the sample's images) must lie below chance + ``refuse_gain`` (10 points).
On a few dozen images it does not, whatever the probe scores: the decision is then
**undecided**, and auto trains (scarce: finetune; plenty: pilot finetune against scratch)
rather than refuse on no evidence. Without ``evidence`` (older figures) the rule is the
margin alone: both probes within ``max(learnable_margin, 2 x spread)`` of chance.

**Similar** means the pretraining supplies much of what the task needs: the gain
(pretrained minus random-init probe) must be *significant*, at least ``2 x`` its standard
error (the probes' fold spreads over ``sqrt(folds)``) and ``similar_gain`` in points, and
it must close at least ``similar_share`` (45%) of the *room above chance*,
``1 - chance``. Random labels have no significant gain (dissimilar); a task that
random-init features already half solve (textures, digits with inverted contrast: the
pretraining adds 15-35% of the room) is dissimilar and fine-tunes; glyph classes
regrouped into new labels (random features 0.26-0.32, pretrained 0.72-0.81 at chance 0.2:
50-68% of the room) are similar, and freezing keeps what fine-tuning everything on ten
images per class destroys. Scarce + similar trains ``partial:1`` (the last stage and the
head), not the table's ``linear_probe``, since stop 21: on the 120-image test splits of
``benchmarks/bench_auto.py`` a frozen backbone lost 2-21 points on input-level shifts of
known glyphs and digits (over photos, noisy, small, inverted, occluded), where
``partial:1`` stayed within 2 points on most; on a part no rule had seen (``fresh4``) this
took auto from 6 to 10 of 15 task-seeds. The cost: glyph classes regrouped into new labels
at ten images per class, where ``linear_probe`` leads ``partial:1`` by 3.0-5.4 points
(``python benchmarks/bench_auto_rules.py``, candidate A). On the four parts written after
it in stop 22 it hit 51 of 72 against 52 for the frozen backbone, with fewer points lost
on three and as many on the fourth (1.8 against 2.2 on average): which layers ten images
per class should train depends on the kind of shift, and nothing measured here tells the
kinds apart reliably.

Where the share is within one standard error of ``similar_share``, the decision names a
pilot of both sides instead of trusting the threshold (it runs only with images enough to
hold out).

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
from statistics import NormalDist
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
    # candidates a short pilot should settle (first = default); with strategy "refuse":
    # what a pilot trains to look for a signal the probes missed (refuse only if none beats
    # chance significantly and the best one's bound rules out ``refuse_gain``)
    pilot: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _near(value: float, threshold: float, sd: float) -> bool:
    return abs(value - threshold) < sd


def _upper_bound(evidence: Mapping[str, Mapping[str, float]], chance: float,
                 t: AutoThresholds) -> float | None:
    """The pretrained probe's one-sided upper confidence bound at ``refuse_bound_p``: its
    accuracy plus ``z`` binomial standard errors over the sample's ``n`` images (the larger
    of the errors at the probe's rate and at chance). ``None`` without those figures."""
    e = evidence.get("pretrained")
    if not e or not e.get("n"):
        return None
    q, n = float(e["probe"]), int(e["n"])
    sd = math.sqrt(max(q * (1 - q), chance * (1 - chance)) / n)
    return q + NormalDist().inv_cdf(1 - t.refuse_bound_p) * sd


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
    gain = p - r
    gain_sd = math.sqrt(sp * sp + sr * sr) / math.sqrt(max(folds, 1))
    room = max(1.0 - chance, 1e-9)
    share, share_sd = gain / room, gain_sd / room
    similar = gain >= max(t.similar_gain, 2.0 * gain_sd) and share >= t.similar_share
    near_similar = (gain >= t.similar_gain
                    and (_near(share, t.similar_share, share_sd)
                         or _near(gain, 2.0 * gain_sd, gain_sd)))
    sim = "similar" if similar else "dissimilar"
    cell = f"{size} + {sim}"
    table = TABLE[(size, sim)]
    figures = (f"probe {p:.3f} on pretrained vs {r:.3f} on random-init features (gain "
               f"{gain:+.3f} +- {gain_sd:.3f}: {share:.0%} of the room above chance "
               f"{chance:.3f}; similar from {t.similar_share:.0%} and a significant gain)")
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
    # identical images (constant pixels) carry nothing, however few: no bound needed
    blank = bool(evidence and (evidence.get("raw pixels") or {}).get("constant"))
    bound = (_upper_bound(evidence, chance, t) if evidence and not learnable and not blank
             else None)
    undecided = bound is not None and bound >= chance + t.refuse_gain
    if not learnable and not undecided:
        # a linear probe on a few hundred images cannot tell a weak signal from none: where
        # images can be held out, a pilot looks for it before auto refuses (module doc)
        ruled_out = ("; every image is the same (constant pixels)" if blank
                     else "" if bound is None else
                     f"; the pretrained probe's upper bound ({1 - t.refuse_bound_p:.0%}, "
                     f"one-sided) {bound:.3f} rules out a gain of {t.refuse_gain:.2f} over "
                     f"chance {chance:.3f}")
        candidates = ("finetune",) if size == "scarce" else ("scratch", "finetune")
        return Decision(
            "refuse",
            f"transfer learning not recommended: nothing to learn from ({cell}) -- {nothing}"
            f"{ruled_out}; "
            f"{figures}; {size_txt}. Where there are {t.pilot_min_per_class} images per "
            f"class to hold out, a pilot of {' and '.join(candidates)} (the full epochs) "
            "looks for a signal the probes missed, and auto refuses only if it finds none "
            f"and rules out a gain of {t.refuse_gain:.2f}. Check the labels, collect more "
            "data, or choose a strategy "
            "explicitly (--strategy finetune|partial:K|first:K|scratch, or --force)",
            cell, table, table != "refuse", pilot=candidates)
    if hard or undecided:
        # something weak is learnt, or too few images to rule a real gain out (a refusal
        # would rest on no evidence): auto trains (module doc)
        why = (f"undecided: {nothing}; but on {int(evidence['pretrained']['n'])} images the "
               f"pretrained probe's upper bound ({1 - t.refuse_bound_p:.0%}, one-sided) is "
               f"{bound:.3f}, so a gain of {t.refuse_gain:.2f} over chance {chance:.3f} "
               "cannot be ruled out and a refusal would rest on no evidence"
               if undecided and evidence else
               f"hard: something is learnt ({test_txt}) but every probe stays within "
               f"{t.learnable_margin:.2f} of chance")
        if size == "plenty":
            return Decision("finetune", f"{cell}, {why}; {figures}, {size_txt}: pilot "
                            "finetune against scratch", cell, table, table != "finetune",
                            pilot=("finetune", "scratch"))
        return Decision("finetune", f"{cell}, {why}; {figures}, {size_txt}: fine-tune the "
                        "whole network from the pretrained init", cell, table,
                        table != "finetune")
    if size == "scarce" and similar:
        return Decision("partial:1", f"{cell}: {figures}, {size_txt}: the pretrained features "
                        "supply what random ones lack; keep the early stages frozen and train "
                        "the last stage with a new head (the table's linear_probe cannot adapt "
                        "the top to the task: on glyphs and digits over photos, noisy, small "
                        "or inverted it lost up to 21 points, and partial:1 stayed within 2 "
                        "on most; fine-tuning everything on little data would wear the "
                        "features away)"
                        + ("; the share is within its spread of the threshold: pilot "
                           "against finetune" if near_similar else ""),
                        cell, table, True,
                        pilot=("partial:1", "finetune") if near_similar else ())
    if size == "plenty" and similar:
        return Decision("finetune", f"{cell}: {figures}, {size_txt}: with plenty of similar "
                        "data, fine-tuning everything beats a frozen backbone (the table's "
                        "linear_probe); pilot against "
                        + ("scratch (the similarity is within its spread of the threshold)"
                           if near_similar else "partial:1"), cell, table, True,
                        pilot=("finetune", "scratch" if near_similar else "partial:1"))
    if size == "plenty":
        if near_similar:
            return Decision("finetune", f"{cell}: {figures}, {size_txt}: the similarity is "
                            "within its spread of the threshold; pilot finetune against "
                            "scratch", cell, table, True, pilot=("finetune", "scratch"))
        return Decision("scratch", f"{cell}: {figures}, {size_txt}: the pretrained features "
                        "add too little over random ones; pilot scratch against finetune",
                        cell, table, False, pilot=("scratch", "finetune"))
    return Decision("finetune", f"{cell}: {figures}, {size_txt}: the pretrained features "
                    "add too little over random ones to call the data similar, but there is "
                    f"something to learn ({test_txt}) and a pretrained init that adapts "
                    "trains better than scratch or a frozen backbone on little data (the "
                    "table would refuse)" + ("; the share is within its spread of the "
                                             "threshold: pilot against linear_probe"
                                             if near_similar else ""),
                    cell, table, True,
                    pilot=("finetune", "linear_probe") if near_similar else ())
