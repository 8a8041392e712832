"""zoo rank's speed-ups change no number: cv_probe's lean loop scores what the sklearn
pipeline scored."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_core._finetune.measure import cv_probe


def _pipeline_probe(x, y, *, seed=0, folds=5, repeats=3, c=0.5):
    """cv_probe as it was: make_pipeline(StandardScaler, LogisticRegression).score."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from zoo_core._finetune.measure import _clean

    k = int(min(folds, np.unique(y, return_counts=True)[1].min()))
    x, _ = _clean(np.asarray(x))
    accs, train = [], []
    for tr, te in RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats,
                                          random_state=seed).split(np.zeros(len(y)), y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500, tol=1e-4))
        clf.fit(x[tr], y[tr])
        accs.append(float(clf.score(x[te], y[te])))
        train.append(float(clf.score(x[tr], y[tr])))
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(train))


@pytest.mark.parametrize(("n", "d", "k", "shift"), [(40, 8, 2, 0.5), (60, 30, 3, 0.3),
                                                    (50, 64, 5, 0.2), (30, 3, 3, 0.0)])
def test_cv_probe_scores_what_the_sklearn_pipeline_scored(n, d, k, shift):
    rng = np.random.default_rng(n + d)
    y = np.repeat(np.arange(k), n // k)
    x = (rng.normal(size=(len(y), d)) + y[:, None] * shift).astype(np.float32)
    x[:, 0] = 1.0  # a constant column, dropped by both
    got = cv_probe(x, y, seed=2)
    assert (got.mean, got.std, got.train_mean) == _pipeline_probe(x, y, seed=2)  # bitwise

