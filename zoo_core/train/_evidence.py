"""Is there anything to learn? A significance test on features already extracted.

``auto`` refuses only on evidence. Three feature sets of the measured sample are probed
(:func:`zoo_core.train._measure.cv_probe`): the pretrained backbone's head inputs, a
random-init backbone's (BatchNorm recalibrated), and the **raw pixels** (the decoded
images, average-pooled to at most ``RAW_SIDE`` x ``RAW_SIDE`` per channel; no backbone
pass at all). Each is compared with a **label-permutation baseline on the same
features**: the same probe, one stratified K-fold pass per permutation, on labels shuffled
``PERMUTATIONS`` times: what the probe scores when the labels carry no information about
the images. A few permutations estimate it roughly (on 30 images, two shuffles scored 0.08
and 0.27 where chance is 0.2), so the baseline is the larger of their mean and the sample's
majority rate (a constant guess): a probe has to beat both.

The p-value is one-sided: ``z = (probe - baseline) / sd`` with ``sd`` the larger of the
binomial standard error of an accuracy over the sample's ``n`` images at the baseline rate
and the spread of the permuted runs; ``p = P(Z >= z)`` for a standard normal ``Z``.
:func:`zoo_core.strategies._decide.decide` multiplies the smallest p by the number of
feature sets tested (Bonferroni) before comparing it with ``[auto] refuse_p``.

Where no probe is significant and images can be held out, ``auto`` trains a **pilot**
before it refuses (:mod:`zoo_core.train._auto`); :func:`holdout_test` is the test on its
result: the pilot's holdout accuracy against the holdout's majority rate, with the binomial
standard error of an accuracy on that many images, the best of the pilot's candidates
counted as that many tests (Bonferroni), and the upper confidence bound that says what
gain the pilot rules out.

>>> import numpy as np
>>> from zoo_core.train._measure import cv_probe
>>> rng = np.random.default_rng(0)
>>> y = np.repeat(np.arange(4), 30)
>>> signal = rng.normal(size=(120, 8)) + np.eye(4)[y] @ rng.normal(size=(4, 8)) * 0.6
>>> permutation_test(signal, y, probe=0.6, seed=0, cv=cv_probe).p < 0.01
True
>>> permutation_test(rng.normal(size=(120, 8)), y, probe=0.27, seed=0, cv=cv_probe).p > 0.01
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

PERMUTATIONS = 2
RAW_SIDE = 8  # raw pixels are pooled to at most this many pixels per side


@dataclass(frozen=True)
class Evidence:
    """One feature set's probe against its label-permutation baseline."""

    probe: float  # cross-validated probe accuracy on the true labels
    baseline: float  # the same probe on permuted labels (mean), or the majority rate
    baseline_std: float  # spread of the permuted runs
    sd: float  # the standard deviation the z-score divides by
    z: float
    p: float  # one-sided p-value: probability of a probe this good if labels say nothing
    n: int  # images in the sample
    permutations: int
    constant: bool = False  # the features do not vary over the sample: they carry nothing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def p_value(probe: float, baseline: float, sd: float) -> tuple[float, float]:
    """``(z, one-sided p)`` of ``probe`` against ``baseline`` with standard deviation ``sd``.

    >>> round(p_value(0.338, 0.25, 0.0306)[1], 4)
    0.002
    """
    z = (probe - baseline) / max(sd, 1e-12)
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


def permutation_test(x: np.ndarray, y: np.ndarray, *, probe: float, seed: int,
                     cv: Callable[..., Any], permutations: int = PERMUTATIONS) -> Evidence:
    """Test the cross-validated ``probe`` accuracy of features ``x`` against the same probe
    (``cv``: :func:`zoo_core.train._measure.cv_probe`) on ``permutations`` shuffles of
    ``y``, one K-fold pass each (module doc). ``permutations=0``: against the majority
    rate alone (no probe runs), for a probe far enough above it that shuffles cannot
    matter."""
    import numpy as np

    y = np.asarray(y)
    rng = np.random.default_rng([seed, 11])
    runs = [cv(x, rng.permutation(y), seed=seed + 1 + i, repeats=1).mean
            for i in range(permutations)]
    majority = float(np.bincount(y).max() / max(len(y), 1)) if len(y) else 0.0
    baseline = max(float(np.mean(runs)), majority) if runs else majority
    spread = float(np.std(runs)) if len(runs) > 1 else 0.0
    rate = min(max(baseline, 1.0 / max(len(y), 1)), 1.0 - 1.0 / max(len(y), 1))
    sd = max(math.sqrt(rate * (1.0 - rate) / max(len(y), 1)), spread)
    z, p = p_value(probe, baseline, sd)
    flat = np.asarray(x, dtype=np.float64).reshape(len(y), -1) if len(y) else np.zeros((0, 0))
    constant = bool(len(y)) and not bool((np.nan_to_num(flat).std(0) > 1e-12).any())
    return Evidence(probe=float(probe), baseline=baseline, baseline_std=spread, sd=sd,
                    z=float(z), p=float(p), n=len(y), permutations=permutations,
                    constant=constant)


def holdout_test(accuracies: dict[str, float], labels: Any,
                 bound_p: float = 0.05) -> dict[str, Any]:
    """A pilot's evidence: the best holdout accuracy in ``accuracies`` (strategy -> accuracy
    on the holdout images whose labels are ``labels``) against the holdout's majority rate;
    ``p`` is one-sided and multiplied by the number of candidates (Bonferroni). ``upper``:
    the best accuracy's one-sided upper confidence bound at ``bound_p`` (binomial, the
    larger of the errors at its rate and at chance), what the pilot can rule out.

    >>> holdout_test({"finetune": 0.45}, [0, 1, 2, 3] * 16)["p"] < 0.01
    True
    >>> holdout_test({"finetune": 0.30, "scratch": 0.28}, [0, 1, 2, 3] * 16)["p"] > 0.01
    True
    """
    n = len(labels)
    counts: dict[Any, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    chance = max(counts.values()) / n if n else 1.0
    best = max(accuracies.values())
    rate = min(max(chance, 1.0 / max(n, 1)), 1.0 - 1.0 / max(n, 1))
    z, p = p_value(best, chance, math.sqrt(rate * (1.0 - rate) / max(n, 1)))
    q = min(max(best, 1.0 / max(n, 1)), 1.0 - 1.0 / max(n, 1))
    sd = math.sqrt(max(rate * (1.0 - rate), q * (1.0 - q)) / max(n, 1))
    upper = best + NormalDist().inv_cdf(1.0 - bound_p) * sd
    return {"accuracy": best, "chance": chance, "n": n, "z": z,
            "p": min(1.0, p * len(accuracies)), "tests": len(accuracies), "upper": upper,
            "bound_p": bound_p}


def raw_pixels(items: Any, indices: Any) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel features of a prepared sample (``index -> (tensor, label, index)``, up to
    normalisation), average-pooled to at most ``RAW_SIDE`` pixels a side; unreadable items
    are skipped."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    xs, ys = [], []
    for i in indices:
        item = items[int(i)]
        if not isinstance(item, tuple):
            continue  # a BadItem: an unreadable image
        x, label, _ = item
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim == 3 and max(x.shape[-2:]) > RAW_SIDE:
            x = F.adaptive_avg_pool2d(x, (min(RAW_SIDE, x.shape[-2]), min(RAW_SIDE, x.shape[-1])))
        xs.append(x.reshape(-1).numpy())
        ys.append(int(label))
    if not xs:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.stack(xs).astype(np.float64), np.asarray(ys)
