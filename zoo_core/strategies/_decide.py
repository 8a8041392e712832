"""The ``auto`` decision: the seed's transfer-learning table as the frame, measurements as
the judge. Pure Python (no torch), so it can be read, tested and printed on its own.

The table (data size x similarity to the pretraining data) names a *cell*; the cell's
literal advice is printed next to the decision, and where the measurements say the cell's
advice is worse, the decision departs from it and says why:

| cell | the table says | auto does (measured; README "How auto decides") |
|---|---|---|
| scarce + similar | linear_probe | linear_probe if probe/gain reach frozen_enough/frozen_gain |
|  |  | (else finetune) |
| plenty + similar | linear_probe | finetune (pilot against partial:1) |
| plenty + dissimilar | scratch | pilot scratch against finetune |
| scarce + dissimilar | refuse | finetune; refuse only when nothing can be learnt |

"Similar" is measured as the *gain*: the cross-validated probe accuracy on pretrained
features minus the same on random-init features (``[auto] similar_gain``). "Nothing to
learn" means both probes within ``max(learnable_margin, 2 x spread)`` of chance.

>>> d = decide(per_class=10, chance=0.2, probe_pretrained=0.9, probe_random=0.6, spread=0.05)
>>> d.cell, d.table_choice, d.strategy
('scarce + similar', 'linear_probe', 'finetune')
>>> decide(per_class=10, chance=0.2, probe_pretrained=0.22, probe_random=0.21,
...        spread=0.05).strategy
'refuse'
"""

from __future__ import annotations

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


def decide(*, per_class: float, chance: float, probe_pretrained: float | None,
           probe_random: float, spread: float = 0.0,
           thresholds: AutoThresholds | None = None) -> Decision:
    """Decide from the measurements (see the module doc); ``probe_pretrained=None`` means
    the model has no pretrained weights."""
    t = thresholds or AutoThresholds()
    size = "plenty" if per_class >= t.plenty_per_class else "scarce"
    size_txt = (f"{per_class:.0f} images per class ({size}: plenty from "
                f"{t.plenty_per_class})")
    if probe_pretrained is None:
        return Decision("scratch", "the model has no pretrained weights, so there is nothing "
                        f"to transfer; {size_txt}", f"{size} + no pretrained weights",
                        "scratch", False)
    p, r = probe_pretrained, probe_random
    margin = max(t.learnable_margin, 2.0 * spread)
    gain = p - r
    similar = gain >= t.similar_gain
    sim = "similar" if similar else "dissimilar"
    cell = f"{size} + {sim}"
    table = TABLE[(size, sim)]
    figures = (f"probe {p:.3f} on pretrained vs {r:.3f} on random-init features (gain "
               f"{gain:+.3f}; similar from {t.similar_gain:+.2f}), chance {chance:.3f}")
    learnable = max(p, r) - chance >= margin
    if not learnable:
        if size == "scarce":
            return Decision(
                "refuse",
                f"transfer learning not recommended: nothing to learn from -- both probes are "
                f"within {margin:.2f} of chance ({figures}) and there are only {size_txt}. "
                "Check the labels, collect more data, or choose a strategy explicitly "
                "(--strategy finetune|partial:K|scratch, or --force)",
                cell, table, table != "refuse")
        return Decision(
            "scratch", f"{figures}: neither probe beats chance by {margin:.2f} on the sample, "
            f"but with {size_txt} the whole network may still find what a linear probe "
            "cannot; pilot scratch against finetune", cell, table, table != "scratch",
            pilot=("scratch", "finetune"))
    if size == "scarce" and similar:
        if p >= t.frozen_enough and gain >= t.frozen_gain:
            return Decision("linear_probe", f"{figures}: the frozen features already separate "
                            f"the classes (probe >= {t.frozen_enough}) far better than random "
                            f"ones (gain >= {t.frozen_gain}); train a new head",
                            cell, table, False)
        short = (f"the probe stays below {t.frozen_enough}" if p < t.frozen_enough else
                 f"its gain over random features stays below {t.frozen_gain} (measured: a "
                 "near-perfect probe on little data with a modest gain did not make a frozen "
                 "head the best)")
        return Decision("finetune", f"{figures}: pretrained features help, but {short}, so "
                        "the backbone adapts too: "
                        "fine-tuning from the pretrained init measured better than the "
                        "table's frozen backbone (and than partial:1 where they differed)",
                        cell, table, True)
    if size == "plenty" and similar:
        return Decision("finetune", f"{figures}, {size_txt}: with plenty of similar data, "
                        "fine-tuning everything beats a frozen backbone (the table's "
                        "linear_probe); pilot against partial:1", cell, table, True,
                        pilot=("finetune", "partial:1"))
    if size == "plenty":
        return Decision("scratch", f"{figures}, {size_txt}: pretrained features do not beat "
                        "random ones; pilot scratch against finetune", cell, table, False,
                        pilot=("scratch", "finetune"))
    return Decision("finetune", f"{figures}, {size_txt}: the pretrained features fit the data "
                    "no better than random ones, but there is something to learn and a "
                    "pretrained init still trains better than scratch on little data (the "
                    "table would refuse)", cell, table, True)
