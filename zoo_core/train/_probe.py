"""A linear probe that converges: the head as a cross-validated logistic regression.

On cached head inputs the optimisation problem of ``linear_probe`` is convex and small
(images x features). A few epochs of minibatch AdamW stop far from its optimum (train
accuracy 0.74 after 30 epochs on 50 images, where a logistic regression fits them all).
So by default the head is *solved*: a multinomial logistic regression with scikit-learn's
objective (L2 strength C chosen by stratified k-fold cross-validated accuracy), fitted by
full-batch ``torch.optim.LBFGS`` on standardised features, then the standardisation is
folded into the head's weights. ``benchmarks/bench_probe.py`` checks it against
scikit-learn's ``LogisticRegressionCV`` on the same cached features. The
result is an ordinary ``nn.Linear`` head; nothing else in the model changes.

``probe_solver="sgd"`` keeps the epoch loop instead (it is what runs without a feature
cache, and cached == naive holds for it bit for bit).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

SOLVERS = ("lbfgs", "sgd")
C_GRID = (1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MAX_FOLDS = 5


def can_solve(head: nn.Module, feats: Any) -> bool:
    import torch

    return isinstance(head, torch.nn.Linear) and head.bias is not None and \
        feats is not None and feats.ndim == 2 and feats.shape[1] == head.in_features


def _fit(x: Any, y: Any, masks: Any, n_classes: int, c: float, max_iter: int = 100,
         init: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """Multinomial logistic regressions with scikit-learn's objective,
    ``C * sum(cross entropy) + ||W||^2 / 2`` (the bias unpenalised), one per row of
    ``masks`` (F, N: which samples each fits; the folds of a cross-validation), all by
    one full-batch ``torch.optim.LBFGS`` with a strong-Wolfe line search (the problems
    are independent, so their summed objective has their optima). Returns W (F, D, K)
    and b (F, K)."""
    import torch
    import torch.nn.functional as F

    folds, d = masks.shape[0], x.shape[1]
    n = masks.sum(1)  # (F,)
    if init is None:
        w = torch.zeros(folds, d, n_classes, dtype=x.dtype, requires_grad=True)
        b = torch.zeros(folds, n_classes, dtype=x.dtype, requires_grad=True)
    else:  # warm start from the solution for the previous (smaller) C
        w, b = (t.clone().requires_grad_(True) for t in init)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10,
                            line_search_fn="strong_wolfe")
    targets = y.expand(folds, -1)

    def closure() -> Any:
        opt.zero_grad()
        logits = torch.einsum("nd,fdk->fkn", x, w) + b[:, :, None]  # (F, K, N)
        ce = F.cross_entropy(logits, targets, reduction="none")  # (F, N)
        loss = ((ce * masks).sum(1) / n + (w * w).sum((1, 2)) / (2.0 * c * n)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _cv_scores(x: Any, y: Any, n_classes: int, folds: Any) -> dict[float, tuple[float, float]]:
    """Mean held-out (accuracy, -log loss) per C over the folds; along the C grid each
    fit starts from the previous C's solution (the regularisation path, as sklearn)."""
    import torch
    import torch.nn.functional as F

    masks = torch.zeros(len(folds), len(y), dtype=x.dtype)
    for f, (train_idx, _) in enumerate(folds):
        masks[f, torch.as_tensor(train_idx)] = 1.0
    held_out = 1.0 - masks
    out: dict[float, tuple[float, float]] = {}
    init = None
    for c in C_GRID:
        init = _fit(x, y, masks, n_classes, c, init=init)
        with torch.no_grad():
            logits = torch.einsum("nd,fdk->fkn", x, init[0]) + init[1][:, :, None]
            right = (logits.argmax(1) == y).to(x.dtype)  # (F, N)
            ce = F.cross_entropy(logits, y.expand(len(folds), -1), reduction="none")
            per = held_out.sum(1)
            out[c] = (float(((right * held_out).sum(1) / per).mean()),
                      -float(((ce * held_out).sum(1) / per).mean()))
    return out


def solve_head(head: nn.Module, feats: Any, labels: Any, *, seed: int,
               sample_weight: Any = None) -> dict[str, Any]:
    """Fit ``head`` (an ``nn.Linear``) to ``feats`` (N, D) / ``labels`` (N,) in place:
    standardise, pick C by stratified k-fold accuracy (ties: the better log-loss), refit
    on everything (weighted per sample with ``sample_weight``), fold the standardisation
    into the weights. Returns what was chosen."""
    import numpy as np
    import torch
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    x = feats.detach().to("cpu", torch.float64).flatten(1)
    y = labels.detach().to("cpu", torch.long)
    present, counts = torch.unique(y, return_counts=True)
    if len(present) < 2:
        return {"solved": False, "why": "fewer than two classes among readable images"}
    k = head.out_features
    mean, scale = x.mean(0), x.std(0, unbiased=False)
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # constant features
    xs = (x - mean) / scale
    n_folds = int(min(MAX_FOLDS, int(counts.min())))
    scores: dict[float, tuple[float, float]] = {}
    if n_folds >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a class below n_folds members
            folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(
                np.zeros(len(y)), y.numpy()))
        scores = _cv_scores(xs, y, k, folds)
        c_value = max(C_GRID, key=lambda c: scores[c])
    else:  # a class with a single image: no cross-validation, scikit-learn's default C
        c_value = 1.0
    sw = torch.ones(1, len(y), dtype=xs.dtype) if sample_weight is None else \
        sample_weight.to(xs.dtype).reshape(1, -1)  # balance: scikit-learn's sample_weight
    w, b = _fit(xs, y, sw, k, c_value, max_iter=500)
    w, b = w[0], b[0]
    # logits = ((x - mean) / scale) @ w + b  ==  x @ (w / scale) + (b - (mean / scale) @ w)
    weight = (w / scale[:, None]).T
    bias = b - (mean / scale) @ w
    missing = torch.ones(k, dtype=torch.bool)
    missing[present] = False
    bias[missing] = -1e4  # a class without training images is never predicted
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        head.bias.copy_(bias.to(head.bias.dtype))
    return {"solved": True, "solver": "lbfgs", "C": c_value, "folds": n_folds,
            "cv_accuracy": scores[c_value][0] if scores else None, "standardised": True,
            "seconds": round(time.perf_counter() - started, 3)}
