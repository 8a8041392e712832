"""The embedded dataset: scikit-learn's bundled handwritten digits.

``sklearn.datasets.load_digits`` ships 1797 grey 8x8 images (17 grey levels, 0..16)
inside the scikit-learn package, so nothing is downloaded. zoo_core uses it twice:

- **source** split, digits 0-4: pretraining data of the older zoonet weights tag
  ``digits04`` (the default tag, ``glyphs``, saw no digits at all, see :mod:`.glyphs`);
- **target** split, digits 5-9: the transfer-learning task (few images per class),
  exported as an ImageFolder tree by :func:`export_imagefolder`.

The two splits are disjoint by construction (different digits, hence different images).

Every consumer turns an 8x8 image into pixels the same way, :func:`to_pil`:
grey levels 0..16 -> uint8 0..255 (exact integer rounding) -> PIL ``L`` image ->
bilinear resize to ``size x size`` -> ``RGB`` (grey replicated to 3 channels).
The pretraining script feeds exactly these pixels (then normalised with the zoonet
data config), and the exported PNGs hold exactly these pixels, so a model sees the same
input whether it reads the PNGs or the arrays.

numpy and Pillow are imported here; scikit-learn only when the data is loaded; torch never.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from zoo_core import stratified_split  # one split rule for every dataset
from zoo_core_plugins.zoonet._imagefolder import check_split_names, export_tree

SOURCE_CLASSES: tuple[int, ...] = (0, 1, 2, 3, 4)
TARGET_CLASSES: tuple[int, ...] = (5, 6, 7, 8, 9)
MAX_LEVEL = 16  # load_digits grey levels are 0..16
MARKER = ".zoo_digits.json"
_FORMAT = 1  # bump when the exported pixels or the layout change


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.int64)
    assert images.min() >= 0 and images.max() <= MAX_LEVEL
    # exact integer rounding of v * 255 / 16, no float ties
    images8 = ((images * 255 + MAX_LEVEL // 2) // MAX_LEVEL).astype(np.uint8)
    images8.setflags(write=False)
    labels = d.target.astype(np.int64)
    labels.setflags(write=False)
    return images8, labels


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: ``(images, labels)``, images uint8 ``(N, 8, 8)`` in 0..255.

    The arrays are cached and read-only; copy them before changing them.
    """
    return _load()


def source_target_split() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split the digits into the pretraining source and the transfer target.

    Returns ``{"source": (images, labels, indices), "target": (...)}`` where ``labels``
    are the digit values (0-4 for source, 5-9 for target) and ``indices`` are the
    positions in :func:`load_digits_arrays`. The two index sets are disjoint.
    """
    images, labels = _load()
    out = {}
    for name, classes in (("source", SOURCE_CLASSES), ("target", TARGET_CLASSES)):
        idx = np.flatnonzero(np.isin(labels, classes))
        out[name] = (images[idx], labels[idx], idx)
    return out


def source_train_val(
    val_fraction: float = 0.2, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """digits04 pretraining data: digits 0-4 as ``{"train": (images, labels), "val": ...}``.

    Labels are class indices 0-4 (equal to the digit). This is the split the shipped
    ``digits04`` weights were trained and validated on.
    """
    images, labels, _ = source_target_split()["source"]
    tr, va = stratified_split(labels, val_fraction, seed)
    return {"train": (images[tr], labels[tr]), "val": (images[va], labels[va])}


def to_pil(image8: np.ndarray, size: int = 32) -> Image.Image:
    """One uint8 8x8 digit -> an RGB PIL image of ``size x size`` (bilinear upscale)."""
    img = Image.fromarray(np.ascontiguousarray(image8, dtype=np.uint8))  # 2-D uint8 -> "L"
    if size != img.width:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return img.convert("RGB")


def to_rgb_array(images8: np.ndarray, size: int = 32) -> np.ndarray:
    """Many uint8 8x8 digits -> uint8 ``(N, size, size, 3)``, the same pixels as the PNGs."""
    if len(images8) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([np.asarray(to_pil(im, size)) for im in images8])


def channel_stats(images8: np.ndarray, size: int = 32) -> tuple[float, float]:
    """Mean and std of the pixels in [0, 1] after the standard upscale (grey: one value)."""
    x = to_rgb_array(images8, size)[..., 0].astype(np.float64) / 255.0
    return float(x.mean()), float(x.std())


# ----------------------------------------------------------------------------- export


def _plan(
    classes: Iterable[int],
    per_class: int | None,
    seed: int,
    split: Sequence[str],
    val_fraction: float,
) -> dict[str, dict[int, list[int]]]:
    """Which dataset indices go into which split/class folder."""
    images, labels = _load()
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("classes is empty")
    bad = [c for c in classes if c not in range(10)]
    if bad:
        raise ValueError(f"digit classes must be in 0..9, got {bad}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate classes in {classes}")
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be a positive int or None, got {per_class!r}")
    idx = np.flatnonzero(np.isin(labels, classes))
    if len(split) == 1:
        parts = {split[0]: idx}
    elif len(split) == 2:
        tr, va = stratified_split(labels[idx], val_fraction, seed)
        parts = {split[0]: idx[tr], split[1]: idx[va]}
    else:
        raise ValueError(f"split must name one or two folders, got {split!r}")
    rng = np.random.default_rng([seed, 1])
    plan: dict[str, dict[int, list[int]]] = {}
    for i, (name, part) in enumerate(parts.items()):
        plan[name] = {}
        for c in classes:
            pos = part[labels[part] == c]
            if i == 0 and per_class is not None and per_class < len(pos):
                pos = np.sort(pos[rng.permutation(len(pos))[:per_class]])
            plan[name][c] = [int(p) for p in pos]
    return plan


def export_imagefolder(
    out_dir: str | os.PathLike[str],
    *,
    classes: Iterable[int] = TARGET_CLASSES,
    per_class: int | None = None,
    seed: int = 0,
    size: int = 32,
    split: Sequence[str] = ("train", "val"),
    val_fraction: float = 0.2,
) -> Path:
    """Write digits as an ImageFolder tree ``out_dir/<split>/<digit>/*.png`` (RGB PNGs).

    With two ``split`` names, each class is split seeded and stratified: ``val_fraction``
    of its images go to the second folder (``val``), the rest to the first (``train``).
    ``per_class`` then keeps only that many (seeded) images per class in the first folder,
    for few-shot training; the val folder stays the same whatever ``per_class`` is, so
    runs with different shot counts are evaluated on identical images. With one name,
    every image of the classes goes there (``per_class`` still applies).

    Files are named ``digits_<index>.png`` after the position in ``load_digits``.
    The call is idempotent: a marker file ``.zoo_digits.json`` records the parameters and
    a tree with matching parameters is left untouched. Otherwise the tree is written into
    a temporary directory next to ``out_dir`` and renamed into place, so ``out_dir`` is
    never half written. An existing non-empty ``out_dir`` without our marker is refused.
    Returns ``out_dir`` as a :class:`~pathlib.Path`.
    """
    split = check_split_names(split)
    classes = [int(c) for c in classes]
    if size < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    plan = _plan(classes, per_class, seed, split, val_fraction)
    params = {
        "format": _FORMAT,
        "dataset": "sklearn.datasets.load_digits",
        "classes": classes,
        "per_class": per_class,
        "seed": seed,
        "size": size,
        "split": list(split),
        "val_fraction": val_fraction if len(split) == 2 else None,
    }
    marker = dict(
        params,
        counts={s: {str(c): len(v) for c, v in per.items()} for s, per in plan.items()},
    )

    def write(tmp: Path) -> None:
        images, _ = _load()
        for s, per in plan.items():
            for c, positions in per.items():
                d = tmp / s / str(c)
                d.mkdir(parents=True)
                for p in positions:
                    to_pil(images[p], size).save(d / f"digits_{p:04d}.png", format="PNG")

    return export_tree(out_dir, MARKER, marker, write)
