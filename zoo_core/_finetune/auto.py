"""``auto``: measure the data and the pretrained features, decide, explain."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo_core._finetune.features import _extract
from zoo_core._finetune.utils import _Printer, _seed_all, _set_input_size
from zoo_core.errors import StrategyError, TransferNotRecommendedError

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core._data import FolderData

MEASURE_PER_CLASS = 50
MEASURE_MAX_IMAGES = 1000
RANDOM_INITS = 3  # random-feature baseline: mean over this many initialisations


def _loo_centroid_accuracy(x: Any, y: Any) -> float | None:
    """Leave-one-out nearest-centroid accuracy on standardised features ``x`` (N, D).

    The own-class centroid excludes the sample itself: its squared distance is
    ``(n_c / (n_c - 1))**2 * |x_i - mu_c|**2``. Samples of classes with one image are
    not scored. ``None`` when nothing can be scored.
    """
    import torch

    x = x.double().flatten(1)
    x = (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-6)
    classes = torch.unique(y)
    mu = torch.stack([x[y == c].mean(0) for c in classes])
    n = torch.stack([(y == c).sum() for c in classes]).double()
    d = torch.cdist(x, mu) ** 2
    own = torch.searchsorted(classes, y)
    n_own = n[own]
    scored = n_own > 1
    if not bool(scored.any()):
        return None
    rows = torch.arange(len(y))
    factor = torch.where(scored, n_own / (n_own - 1).clamp(min=1), torch.ones_like(n_own))
    d[rows, own] = d[rows, own] * factor**2
    pred = d.argmin(1)
    return float((pred[scored] == own[scored]).double().mean())


def _measure_indices(labels: Sequence[int], seed: int) -> list[int]:
    import numpy as np

    labels_arr = np.asarray(labels)
    classes = np.unique(labels_arr)
    per = max(2, min(MEASURE_PER_CLASS, MEASURE_MAX_IMAGES // max(1, len(classes))))
    rng = np.random.default_rng([seed, 7])
    chosen = []
    for c in classes:
        pos = np.flatnonzero(labels_arr == c)
        if len(pos) > per:
            pos = np.sort(rng.choice(pos, per, replace=False))
        chosen.extend(int(p) for p in pos)
    return sorted(chosen)


def measure_similarity(
    model_name: str,
    folder: FolderData,
    *,
    weights: Any = "default",
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    device: Any = "cpu",
    input_size: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Measure how well the pretrained features fit the target data (see module doc).

    Returns the figures: ``acc_pretrained``, ``acc_random``, ``chance``, ``similarity``
    (``None`` when no class has two images), ``images``, ``method``, ``formula``,
    ``seconds``.
    """
    import torch

    from zoo_core._builder import build_model
    from zoo_core._data import ImageDataset, make_transforms

    started = time.perf_counter()
    device = torch.device(device)
    classes = list(folder.classes)
    idx = _measure_indices([lab for _, lab in folder.train], seed)
    labels = torch.tensor([folder.train[i][1] for i in idx])
    accs: dict[str, Any] = {}
    runs = [("pretrained", "linear_probe", weights, seed)]
    runs += [(f"random{i}", "scratch", "default", seed + 1 + i) for i in range(RANDOM_INITS)]
    for kind, strategy, w, s in runs:
        _seed_all(s)
        m = build_model(model_name, len(classes), strategy, weights=w, label_names=classes,
                        device=device)
        _set_input_size(m, input_size)
        _, eval_tf = make_transforms(m)
        ds = ImageDataset(folder.train, eval_tf)
        feats, valid, _, ok = _extract(m, m.zoo.head, ds, idx, batch_size=batch_size,
                                       num_workers=num_workers, device=device, check=False)
        if not ok:
            raise StrategyError(
                f"cannot measure similarity for {model_name!r}: its head module "
                f"{m.zoo.head!r} does not take one tensor; pass strategy= explicitly")
        accs[kind] = None if feats is None else _loo_centroid_accuracy(
            feats[valid.to(feats.device)].cpu(), labels[valid])
        del m
    chance = 1.0 / len(classes)
    rand = [accs[f"random{i}"] for i in range(RANDOM_INITS)]
    acc_pre = accs["pretrained"]
    acc_rand = None if None in rand else sum(rand) / len(rand)
    if acc_pre is None or acc_rand is None:
        similarity = None
    elif 1.0 - acc_rand < 1e-9:
        similarity = 1.0 if acc_pre >= acc_rand else 0.0
    else:
        similarity = min(1.0, max(0.0, (acc_pre - acc_rand) / (1.0 - acc_rand)))
    return {
        "method": "leave-one-out nearest-centroid accuracy on standardised head-input "
                  f"features, pretrained vs randomly initialised backbone (mean of "
                  f"{RANDOM_INITS} initialisations)",
        "formula": "similarity = clip((acc_pretrained - acc_random) / (1 - acc_random), 0, 1)",
        "images": len(idx),
        "acc_pretrained": acc_pre,
        "acc_random": acc_rand,
        "acc_random_each": rand,
        "chance": chance,
        "similarity": similarity,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _has_pretrained(model_name: str, weights: Any) -> bool:
    from zoo_core._builder import _weights_spec
    from zoo_core._registry import HUB_PREFIX, get_registry
    from zoo_core._strategies import Strategy

    if weights is None:
        return False
    if isinstance(model_name, str) and model_name.startswith(HUB_PREFIX):
        return True
    spec = get_registry().resolve(model_name).spec
    try:
        return _weights_spec(spec, weights, Strategy("finetune")) is not None
    except StrategyError:
        return False


def _fmt_figures(fig: Mapping[str, Any]) -> str:
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [f"data        {fig['num_train']} training images, {fig['num_classes']} classes, "
             f"{fig['per_class']:.1f} per class (plenty from {fig['plenty_per_class']})"]
    if "acc_pretrained" in fig:
        lines.append(
            f"similarity  {f(fig['similarity'])} (high from {fig['high_similarity']}): "
            f"nearest-centroid accuracy {f(fig['acc_pretrained'])} on pretrained features vs "
            f"{f(fig['acc_random'])} on random features (chance {fig['chance']:.3f}), "
            f"leave-one-out on {fig['images']} training images, {fig['seconds']:.1f} s")
    elif fig.get("similarity") is not None:
        lines.append(f"similarity  {fig['similarity']:.3f} (given, not measured)")
    elif not fig.get("pretrained", True):
        lines.append("similarity  not measured: the model has no pretrained weights")
    return "\n".join(lines)


def _decide(model_name: str, folder: FolderData, *, weights: Any, seed: int,
            similarity_override: float | None, force: bool, device: Any, num_workers: int,
            say: _Printer, input_size: Any = None) -> tuple[str, str, bool, dict[str, Any]]:
    """``auto``: measure, decide, explain. Returns (strategy, reason, forced, figures)."""
    from zoo_core._registry import get_registry
    from zoo_core._strategies import decide_strategy

    thresholds = get_registry().catalog.auto
    n, c = len(folder.train), folder.num_classes
    figures: dict[str, Any] = {"num_train": n, "num_classes": c, "per_class": n / c,
                               "plenty_per_class": thresholds.plenty_per_class,
                               "high_similarity": thresholds.high_similarity}
    pretrained = _has_pretrained(model_name, weights)
    similarity = None
    if pretrained:
        if similarity_override is not None:
            similarity = float(similarity_override)
            figures["similarity"] = similarity
            figures["similarity_source"] = "given by the caller (similarity_override)"
        else:
            measured = measure_similarity(model_name, folder, weights=weights, seed=seed,
                                          device=device, num_workers=num_workers,
                                          input_size=input_size)
            figures.update(measured)
            similarity = measured["similarity"]
            figures["similarity_source"] = "measured"
    figures["pretrained"] = pretrained
    say(_fmt_figures(figures))
    try:
        kind, reason = decide_strategy(has_pretrained=pretrained, num_train_samples=n,
                                       num_classes=c, similarity=similarity,
                                       thresholds=thresholds)
    except TransferNotRecommendedError as exc:
        if not force:
            err = TransferNotRecommendedError(
                f"{exc}\nmeasured: {_fmt_figures(figures)}\nto fine-tune anyway pass "
                "force=True (CLI: --force), or choose --strategy explicitly")
            err.figures = figures  # type: ignore[attr-defined]
            raise err from None
        reason = (f"forced: {exc} -- fine-tuning everything anyway because force=True "
                  "was given")
        say("decision    finetune (forced; auto said: transfer learning not recommended)")
        return "finetune", reason, True, figures
    say(f"decision    {kind}: {reason}")
    return kind, reason, False, figures
