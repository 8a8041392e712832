"""zoo rank's speed-ups change no number: the sample decoded once per preprocessing gives
the features that decoding it per model gives (pretrained, and random-init with BatchNorm
recalibration), and cv_probe's lean loop scores what the sklearn pipeline scored."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo_core.build._builder import build_model
from zoo_core.data import _data
from zoo_core.data._data import BadImageWarning, scan_image_folder
from zoo_core.rank import _ranking as ranking
from zoo_core.rank._ranking import rank_models
from zoo_core.train._measure import (
    cv_probe,
    extract_sample,
    prepare_sample,
    preprocessing_key,
    sample_indices,
)
from zoo_core.train._utils import _seed_all

pytestmark = pytest.mark.usefixtures("one_thread")


def _folder_and_sample(root: Path):
    folder = scan_image_folder(root, seed=0, warn=False)
    idx = sample_indices([lab for _, lab in folder.train], 0, per_class=4)
    return folder, idx


def test_shared_sample_gives_the_same_pretrained_features(digits):
    """Every zoonet tag decodes alike (the tags differ in normalisation only): one
    prepared sample serves all four, each normalised its own way, bitwise equal."""
    folder, idx = _folder_and_sample(digits)
    models = [build_model(arch, folder.num_classes, "linear_probe", weights=w)
              for arch in ("zoonet_s", "zoonet_m") for w in ("glyphs", "digits04")]
    assert len({preprocessing_key(m) for m in models}) == 1
    prepared = prepare_sample(models[0], folder, idx)
    for model in models:
        x0, y0 = extract_sample(model, folder, idx, batch_size=3, num_workers=0,
                                device=torch.device("cpu"))
        x1, y1 = extract_sample(model, folder, idx, batch_size=3, num_workers=0,
                                device=torch.device("cpu"), prepared=prepared)
        assert np.array_equal(x0, x1) and np.array_equal(y0, y1)  # bitwise


def test_a_sample_prepared_for_another_decoding_is_refused(digits):
    folder, idx = _folder_and_sample(digits)
    model = build_model("zoonet_s", folder.num_classes, "linear_probe", weights="glyphs")
    prepared = prepare_sample(model, folder, idx)
    prepared.key = "Compose(Resize(size=64))"
    with pytest.raises(ValueError, match="decoded as"):
        extract_sample(model, folder, idx, batch_size=3, num_workers=0,
                       device=torch.device("cpu"), prepared=prepared)


def test_shared_sample_gives_the_same_random_init_features(digits):
    """Recalibration runs BatchNorm in train mode on the same batches: same statistics."""
    folder, idx = _folder_and_sample(digits)
    out = []
    for shared in (False, True):
        _seed_all(3)
        m = build_model("zoonet_s", folder.num_classes, "scratch")
        prepared = prepare_sample(m, folder, idx) if shared else None
        out.append(extract_sample(m, folder, idx, batch_size=3, num_workers=0,
                                  device=torch.device("cpu"), recalibrate=True,
                                  prepared=prepared))
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])


def test_shared_sample_skips_an_image_that_fails_to_decode(digits, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(digits, data)
    folder, idx = _folder_and_sample(data)
    broken = Path(folder.train[idx[1]][0])
    broken.write_bytes(broken.read_bytes()[:60])  # a valid header, truncated pixels
    model = build_model("zoonet_s", folder.num_classes, "linear_probe", weights="glyphs")
    prepared = prepare_sample(model, folder, idx)
    bad = [it for it in prepared.items.values() if isinstance(it, _data.BadItem)]
    x0, y0 = extract_sample(model, folder, idx, batch_size=4, num_workers=0,
                            device=torch.device("cpu"))
    x1, y1 = extract_sample(model, folder, idx, batch_size=4, num_workers=0,
                            device=torch.device("cpu"), prepared=prepared)
    assert [b.path for b in bad] == [str(broken)]
    assert len(y1) == len(idx) - 1 and np.array_equal(x0, x1)
    assert np.array_equal(y0, y1)


def test_rank_decodes_each_sampled_image_once(digits, monkeypatch):
    """Four zoonet tags and two random-init baselines (each recalibrated, then read):
    one decode per sampled image, instead of one per image and pass."""
    calls = []
    real = _data.load_rgb
    monkeypatch.setattr(_data, "load_rgb", lambda path: calls.append(path) or real(path))
    r = rank_models(digits, ["zoonet*"], cache=False, per_class=4)
    assert len(r.measured) == 4
    assert len(calls) == r.images == len(set(calls))


def test_rank_is_unchanged_when_the_sample_is_too_big_to_share(digits, monkeypatch):
    shared = rank_models(digits, ["zoonet*"], cache=False, per_class=4)
    monkeypatch.setattr(ranking, "SHARED_SAMPLE_BYTES", 0)
    alone = rank_models(digits, ["zoonet*"], cache=False, per_class=4)
    strip = ("seconds",)
    assert [{k: v for k, v in row.as_dict().items() if k not in strip}
            for row in shared.rows] == \
        [{k: v for k, v in row.as_dict().items() if k not in strip} for row in alone.rows]


def _pipeline_probe(x, y, *, seed=0, folds=5, repeats=3, c=0.5):
    """cv_probe as it was: make_pipeline(StandardScaler, LogisticRegression).score."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from zoo_core.train._measure import _clean

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


def test_rank_counts_a_sampled_image_that_fails_to_decode(digits, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(digits, data)
    folder, idx = _folder_and_sample(data)  # the sample rank_models draws (seed 0)
    broken = Path(folder.train[idx[1]][0])
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.warns(BadImageWarning, match=f"failed to decode: .*{broken.name}"):
        r = rank_models(data, ["zoonet_s"], cache=False, per_class=4)
    assert r.bad_images == 1 and r.images == len(idx)
    assert [row.status for row in r.rows] == ["measured", "measured"]
