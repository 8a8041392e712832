"""Measurements behind ``auto`` and ``zoo rank``: how much do the pretrained features know?

On a class-balanced sample of the training images (up to ``MEASURE_PER_CLASS`` per class,
``MEASURE_MAX_IMAGES`` in all), the head inputs of the model are extracted once:

- **pretrained**: the backbone with its pretrained weights, in eval mode (exactly what
  ``linear_probe`` trains on);
- **random**: ``RANDOM_INITS`` randomly initialised backbones of the same architecture,
  read *the way a network trained from scratch computes*: every BatchNorm is first
  recalibrated on the sample (running statistics reset, one pass in train mode with a
  cumulative average), then evaluated. Reading BatchNorm with its init statistics (mean 0,
  variance 1) would measure an input scale that no trained network ever sees.

Each feature set is scored by a cross-validated few-shot probe: a standardised,
L2-regularised logistic regression (scikit-learn), stratified K-fold repeated
``PROBE_REPEATS`` times; the spread across folds and repeats is reported with the mean.
:func:`logme` adds the LogME evidence (You et al., ICML 2021) for ``zoo rank``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError, StrategyError
from zoo_core.train._evidence import permutation_test, raw_pixels
from zoo_core.train._features import _extract
from zoo_core.train._utils import _seed_all, _set_input_size

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn

    from zoo_core.data._data import FolderData

MEASURE_PER_CLASS = 50
MEASURE_MAX_IMAGES = 1000
RANDOM_INITS = 2
PROBE_REPEATS = 3
PROBE_FOLDS = 5
PROBE_C = 0.5  # inverse L2 strength of the probe, on standardised features


@dataclass(frozen=True)
class ProbeScore:
    """A cross-validated probe accuracy: mean and spread over folds and repeats."""

    mean: float
    std: float
    folds: int
    repeats: int
    train_mean: float = float("nan")  # accuracy on the training folds (fit, not transfer)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Measurements:
    """What ``auto`` decides from; every figure is printed with the decision."""

    num_train: int
    num_classes: int
    per_class: float
    min_per_class: int
    chance: float
    images: int  # images in the measured sample
    pretrained: ProbeScore | None  # None: no pretrained weights
    random: ProbeScore
    random_each: tuple[float, ...] = ()
    raw: ProbeScore | None = None  # raw pixels (pooled; no backbone), probed when needed
    # feature set -> its probe against a label-permutation baseline (._evidence.Evidence,
    # plus "tests": the sets planned, for Bonferroni); tested in order until one is
    # significant, so a set that was not needed is absent
    evidence: dict[str, Any] = field(default_factory=dict)
    train_chance: float | None = None  # majority rate of the training labels
    logme_pretrained: float | None = None
    problems: tuple[str, ...] = ()  # what was wrong with the features (constant, NaN)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def learnable(self) -> tuple[str, float]:
        """The feature set whose probe is most significantly above its permutation
        baseline, and its p-value (``("", 1.0)`` when nothing was tested)."""
        if not self.evidence:
            return "", 1.0
        name = min(self.evidence, key=lambda k: self.evidence[k]["p"])
        return name, float(self.evidence[name]["p"])

    @property
    def gain(self) -> float | None:
        """Pretrained minus random probe accuracy: does pretraining beat nothing?"""
        return None if self.pretrained is None else self.pretrained.mean - self.random.mean

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gain"] = self.gain
        return d


def sample_indices(labels: Sequence[int], seed: int, *, per_class: int = MEASURE_PER_CLASS,
                   max_images: int = MEASURE_MAX_IMAGES) -> list[int]:
    """A class-balanced sample of positions in ``labels`` (seeded, sorted)."""
    import numpy as np

    labels_arr = np.asarray(labels)
    classes = np.unique(labels_arr)
    per = max(2, min(per_class, max_images // max(1, len(classes))))
    rng = np.random.default_rng([seed, 7])
    chosen: list[int] = []
    for c in classes:
        pos = np.flatnonzero(labels_arr == c)
        if len(pos) > per:
            pos = np.sort(rng.choice(pos, per, replace=False))
        chosen.extend(int(p) for p in pos)
    return sorted(chosen)


def _clean(x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Replace non-finite values and drop constant columns; say what was wrong."""
    import numpy as np

    problems = []
    x = x.reshape(len(x), -1).astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        problems.append(f"{int(bad.any(1).sum())} of {len(x)} feature rows had NaN/inf "
                        "values (replaced by 0)")
        x = np.where(bad, 0.0, x)
    keep = x.std(0) > 1e-12
    if not keep.any():
        problems.append("the features are constant over the sample (constant images, or a "
                        "backbone that ignores its input): nothing to measure")
    return x[:, keep], problems


def cv_probe(x: np.ndarray, y: np.ndarray, *, seed: int = 0, folds: int = PROBE_FOLDS,
             repeats: int = PROBE_REPEATS, c: float = PROBE_C) -> ProbeScore:
    """Repeated stratified K-fold accuracy of a standardised logistic regression.

    ``folds`` shrinks to the smallest class count (at least 2). Constant features score
    the majority-class rate (what a classifier that learnt nothing gets).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 10)
    >>> x = rng.normal(size=(20, 4)) + y[:, None] * 3.0
    >>> round(cv_probe(x, y).mean, 2)
    1.0
    """
    import numpy as np
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if k < 2:
        raise InvalidArgumentError(
            f"cannot cross-validate a probe: the smallest class has {int(counts.min())} "
            "image(s) in the sample; at least 2 per class are needed")
    x, _ = _clean(np.asarray(x))
    splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    accs, train_accs = [], []
    majority = counts.max() / counts.sum()
    # The inputs are checked above (finite, 2-D, float64): sklearn's per-call validation
    # was about a fifth of zoo rank's time. Same fits and numbers as
    # make_pipeline(StandardScaler(), LogisticRegression(...)).fit/.score, bitwise
    # (tests/rank/test_rank_speed.py).
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for tr, te in splitter.split(np.zeros(len(y)), y):
            if x.shape[1] == 0:
                accs.append(float(np.mean(y[te] == np.bincount(y[tr]).argmax())))
                train_accs.append(float(majority))
                continue
            scaler = StandardScaler()
            x_tr = scaler.fit_transform(x[tr])
            clf = LogisticRegression(C=c, max_iter=500, tol=1e-4).fit(x_tr, y[tr])
            accs.append(_accuracy(clf, scaler.transform(x[te]), y[te]))
            train_accs.append(_accuracy(clf, x_tr, y[tr]))
    return ProbeScore(mean=float(np.mean(accs)), std=float(np.std(accs)), folds=k,
                      repeats=repeats, train_mean=float(np.mean(train_accs)))


def _accuracy(clf: Any, x: np.ndarray, y: np.ndarray) -> float:
    """``clf.score(x, y)`` of a fitted linear classifier without sklearn's checks: its
    ``predict`` (``x @ coef_.T + intercept_``, the sign for two classes, else the argmax)
    and the mean of the hits, the same operations in the same order."""
    import numpy as np

    scores = x @ clf.coef_.T + clf.intercept_
    if scores.shape[1] == 1:
        pred = clf.classes_[(scores.ravel() > 0).astype(np.intp)]
    else:
        pred = clf.classes_[scores.argmax(axis=1)]
    return float(np.mean(y == pred))


def logme(x: np.ndarray, y: np.ndarray, *, max_iter: int = 11) -> float:
    """LogME: the log marginal evidence per sample of a Bayesian linear model from the
    features to each one-hot label column, averaged over classes (You et al., ICML 2021,
    the fixed-point iteration of their Algorithm 2). Higher is better; comparable across
    backbones on the same data.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> good = rng.normal(size=(40, 8)) + y[:, None] * 2.0
    >>> bad = rng.normal(size=(40, 8))
    >>> logme(good, y) > logme(bad, y)
    True
    """
    import numpy as np

    f, _ = _clean(np.asarray(x))
    if f.shape[1] == 0:
        return float("-inf")
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    evidences = []
    for c in np.unique(y):
        t = (np.asarray(y) == c).astype(np.float64)
        z = u.T @ t  # projections onto the feature directions
        z2 = z**2
        t2 = float(t @ t)
        resid_extra = max(t2 - float(z2.sum()), 0.0)  # the part outside span(F)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
            m2 = float((beta**2 * sigma * z2 / (alpha + beta * sigma) ** 2).sum())
            res2 = float((alpha**2 * z2 / (alpha + beta * sigma) ** 2).sum()) + resid_extra
            alpha_new = gamma / (m2 + 1e-12)
            beta_new = (n - gamma) / (res2 + 1e-12)
            converged = abs(alpha_new - alpha) / alpha < 1e-2 and \
                abs(beta_new - beta) / beta < 1e-2
            alpha, beta = alpha_new, beta_new
            if converged:
                break
        m2 = float((beta**2 * sigma * z2 / (alpha + beta * sigma) ** 2).sum())
        res2 = float((alpha**2 * z2 / (alpha + beta * sigma) ** 2).sum()) + resid_extra
        logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - beta / 2 * res2
                    - alpha / 2 * m2 - logdet / 2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def recalibrate_batchnorm(model: nn.Module, dataset: Any, indices: Sequence[int], *,
                          batch_size: int, device: Any) -> None:
    """Reset BatchNorm running statistics and re-estimate them on ``indices`` (cumulative
    average over one pass in train mode, no gradients), as a trained network would hold."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    from zoo_core.train._features import _loader

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the pass
    was = model.training
    model.train()
    try:
        with torch.no_grad():
            for batch in _loader(dataset, indices, batch_size, 0):
                if batch.x is not None and batch.x.shape[0] > 1:
                    model(batch.x.to(device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was)


def _split_transform(model: nn.Module) -> tuple[Any, Any]:
    """``model``'s eval transform as ``(decode part, Normalize or None)``: weights tags of
    one architecture often differ only in their normalisation, which is applied per model
    to the shared tensors (the same operation on the same tensor: the same numbers)."""
    from torchvision.transforms import Compose, Normalize

    from zoo_core.data._data import make_transforms

    _, eval_tf = make_transforms(model)
    steps = getattr(eval_tf, "transforms", None)
    if isinstance(eval_tf, Compose) and steps and isinstance(steps[-1], Normalize):
        return Compose(steps[:-1]), steps[-1]
    return eval_tf, None


def preprocessing_key(model: nn.Module) -> str:
    """What the sample's tensors depend on before normalisation: the decode part of the
    eval transform (resize, crop, to-tensor, as its ``repr``). Models with the same key
    share one :func:`prepare_sample`; a transform without a meaningful ``repr`` (an
    object address) is shared by nobody."""
    return repr(_split_transform(model)[0])


class PreparedSample:
    """The sampled images decoded and transformed once, up to normalisation (``index ->
    (tensor, label, index)``, or the :class:`~zoo_core.data._data.BadItem` of an unreadable
    image), for every model with the same :func:`preprocessing_key`."""

    def __init__(self, key: str, items: dict[int, Any]) -> None:
        self.key = key
        self.items = items

    @property
    def nbytes(self) -> int:
        return sum(it[0].nbytes for it in self.items.values() if isinstance(it, tuple))

    def dataset(self, normalize: Any) -> _PreparedView:
        return _PreparedView(self.items, normalize)


class _PreparedView:
    """A :class:`PreparedSample` as a map-style dataset, normalised for one model."""

    def __init__(self, items: dict[int, Any], normalize: Any) -> None:
        self.items = items
        self.normalize = normalize

    def __getitem__(self, index: int) -> Any:
        from zoo_core.data._data import BadItem

        item = self.items[int(index)]
        if isinstance(item, BadItem) or self.normalize is None:
            return item
        x, label, i = item
        return self.normalize(x), label, i

    def __len__(self) -> int:
        return len(self.items)


def prepare_sample(model: nn.Module, folder: FolderData, indices: Sequence[int]) -> PreparedSample:
    """Decode and transform (up to normalisation) the images at ``indices`` once."""
    from zoo_core.data._data import ImageDataset

    decode, _ = _split_transform(model)
    ds = ImageDataset(folder.train, decode)
    return PreparedSample(repr(decode), {int(i): ds[int(i)] for i in indices})


def extract_sample(model: nn.Module, folder: FolderData, indices: Sequence[int], *,
                   batch_size: int, num_workers: int, device: Any,
                   recalibrate: bool = False,
                   prepared: PreparedSample | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Head inputs and labels of the sample (eval transform), as numpy arrays.

    ``prepared``: the sample already decoded and transformed for this model's
    preprocessing (:func:`prepare_sample`); the batches, and so the features, are the
    same as decoding it here."""
    import numpy as np

    from zoo_core.data._data import ImageDataset, make_transforms

    if prepared is None:
        _, eval_tf = make_transforms(model)
        ds: Any = ImageDataset(folder.train, eval_tf)
    else:
        decode, normalize = _split_transform(model)
        if repr(decode) != prepared.key:
            raise ValueError(f"the prepared sample was decoded as {prepared.key}, and "
                             f"{model.zoo.name!r} decodes as {decode!r}")
        ds, num_workers = prepared.dataset(normalize), 0  # nothing left to decode
    if recalibrate:
        recalibrate_batchnorm(model, ds, indices, batch_size=batch_size, device=device)
    feats, valid, _, ok = _extract(model, model.zoo.head, ds, indices, batch_size=batch_size,
                                   num_workers=num_workers, device=device, check=False)
    if not ok:
        raise StrategyError(
            f"cannot measure {model.zoo.name!r}: its head module {model.zoo.head!r} does not "
            "take one tensor; pass an explicit strategy")
    labels = np.asarray([folder.train[i][1] for i in indices])
    if feats is None:
        raise InvalidArgumentError("none of the sampled training images could be decoded")
    mask = valid.cpu().numpy()
    return feats.float().cpu().numpy()[mask], labels[mask]


def measure_transfer(model_name: str, folder: FolderData, *, weights: Any = "default",
                     pretrained: bool = True, seed: int = 0, batch_size: int = 64,
                     num_workers: int = 0, device: Any = "cpu",
                     input_size: tuple[int, int, int] | None = None,
                     with_logme: bool = False, progress: Any = None,
                     model_kwargs: Any = None,
                     evidence_p: float | None = 0.01) -> Measurements:
    """Measure the pretrained and random-init features of ``model_name`` on ``folder``.

    ``evidence_p``: test the probes against permuted labels (:mod:`._evidence`) --
    pretrained, random-init, then raw pixels -- until one is below ``evidence_p`` divided
    by the number of sets (``None``: no test).

    ``progress``: an optional callable ``progress(step_name)`` called after each pass.
    Raises :class:`~zoo_core.InvalidArgumentError` with the counts when a class has fewer
    than 2 training images (nothing can be cross-validated).
    """
    import numpy as np
    import torch

    from zoo_core.build._builder import build_model

    started = time.perf_counter()
    labels_all = [lab for _, lab in folder.train]
    counts = np.bincount(labels_all, minlength=folder.num_classes)
    if counts.min() < 2:
        small = ", ".join(f"{folder.classes[i]}: {int(n)}" for i, n in enumerate(counts)
                          if n < 2)
        raise InvalidArgumentError(
            f"too little data for auto to measure: every class needs at least 2 training "
            f"images, and {small} (of {len(labels_all)} training images in "
            f"{folder.num_classes} classes). Add images, or choose --strategy explicitly "
            "(linear_probe, partial:K, finetune, scratch)")
    device = torch.device(device)
    idx = sample_indices(labels_all, seed)
    problems: list[str] = []
    prepared: list[PreparedSample] = []  # the sample decoded once, shared by every pass

    def features(strategy: str, w: Any, s: int, recal: bool) -> tuple[Any, Any]:
        _seed_all(s)
        m = build_model(model_name, folder.num_classes, strategy, weights=w,
                        label_names=folder.classes, device=device, **(model_kwargs or {}))
        _set_input_size(m, input_size)
        if not prepared or prepared[0].key != preprocessing_key(m):
            prepared[:] = [prepare_sample(m, folder, idx)]
        x, y = extract_sample(m, folder, idx, batch_size=batch_size,
                              num_workers=num_workers, device=device, recalibrate=recal,
                              prepared=prepared[0])
        del m
        _, found = _clean(x)
        problems.extend(p for p in found if p not in problems)
        if progress is not None:
            progress(strategy if strategy != "scratch" else "random init")
        return x, y

    pre = logme_pre = None
    # Is there anything to learn? Each feature set against permuted labels (._evidence),
    # in order, until one is significant (Bonferroni over the sets planned)
    evidence: dict[str, Any] = {}
    planned = 3 if pretrained else 2

    def test(name: str, x: Any, y: Any, probe: float) -> None:
        if evidence_p is None or any(e["p"] * planned < evidence_p for e in evidence.values()):
            return
        evidence[name] = {**permutation_test(x, y, probe=probe, seed=seed, cv=cv_probe).as_dict(),
                          "tests": planned}

    if pretrained:
        x, y = features("linear_probe", weights, seed, False)
        pre = cv_probe(x, y, seed=seed)
        logme_pre = logme(x, y) if with_logme else None
        test("pretrained", x, y, pre.mean)
    rand = []
    for i in range(RANDOM_INITS):
        x, y = features("scratch", "default", seed + 1 + i, True)
        rand.append(cv_probe(x, y, seed=seed))
        if i == 0:
            test("random-init", x, y, rand[0].mean)
    raw = None
    if evidence_p is not None and len(evidence) == planned - 1 and \
            all(e["p"] * planned >= evidence_p for e in evidence.values()):
        x, y = raw_pixels(prepared[0].items, idx)  # no backbone: the decoded sample
        present = np.bincount(y)[np.bincount(y) > 0] if len(y) else np.zeros(0)
        if len(present) > 1 and present.min() >= 2:
            raw = cv_probe(x, y, seed=seed)
            test("raw pixels", x, y, raw.mean)
    rand_mean = float(np.mean([r.mean for r in rand]))
    # spread: within-run fold spread and between-init spread, whichever is larger
    rand_std = float(max(np.mean([r.std for r in rand]), np.std([r.mean for r in rand])))
    random_score = ProbeScore(mean=rand_mean, std=rand_std, folds=rand[0].folds,
                              repeats=rand[0].repeats,
                              train_mean=float(np.mean([r.train_mean for r in rand])))
    n, c = len(labels_all), folder.num_classes
    train_chance = float(counts.max() / counts.sum())
    val_labels = [lab for _, lab in folder.val]
    chance = (float(np.bincount(val_labels).max() / len(val_labels)) if val_labels
              else train_chance)  # what a constant guess scores on the validation split
    return Measurements(
        num_train=n, num_classes=c, per_class=n / c, min_per_class=int(counts.min()),
        chance=chance, images=len(idx), pretrained=pre,
        random=random_score, random_each=tuple(r.mean for r in rand), raw=raw,
        evidence=evidence, train_chance=train_chance,
        logme_pretrained=logme_pre, problems=tuple(problems),
        seconds=round(time.perf_counter() - started, 3))
