"""Procedural texture classes: a transfer target *dissimilar* to zoonet's glyph pretraining.

Ten classes of grey 32x32 images, each drawn from a small formula with random
parameters (:data:`CLASSES`):

======================  ==========================================================
``grating_0/60/120``    sine or square stripes whose wave runs at 0, 60 or 120
                        degrees (±15), 2-6 cycles per image, random phase
``checker``             a rotated checkerboard, period 4-10 pixels
``dots``                6-20 bright discs of radius 1.5-3 at random places
``rings``               concentric rings around a random centre
``cells``               the borders of a Voronoi diagram of 6-14 random points
``ifs``                 an iterated-function-system fractal (chaos game with 3-4
                        random contractive affine maps), log-density
``noise_fine``          Gaussian noise with power spectrum 1/f^0.5
``noise_coarse``        Gaussian noise with power spectrum 1/f^2.5
======================  ==========================================================

Every image then gets a random contrast (0.6-1) and brightness, and is stored like the
digits and glyphs: uint8 grey, replicated to RGB (:func:`to_rgb_array`, the exported PNGs).
The classes are not used in pretraining; they make the "dissimilar" cells of the transfer
table (few or many images per class) with :func:`export_imagefolder`.

Deterministic: :func:`render_set` seeds one ``numpy.random.Generator`` per
(seed, stream, class), so the same arguments give byte-identical arrays, and a class's
images do not depend on the other classes rendered with it. numpy and Pillow only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from zoo_core import InvalidArgumentError
from zoo_core_plugins.zoonet._imagefolder import check_split_names, export_tree
from zoo_core_plugins.zoonet.glyphs import channel_stats, to_rgb_array

__all__ = [
    "CLASSES",
    "MARKER",
    "channel_stats",
    "export_imagefolder",
    "render",
    "render_set",
    "to_rgb_array",
]

MARKER = ".zoo_textures.json"
_FORMAT = 1  # bump when the rendered pixels or the export layout change


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return x, y


def _grating(angle: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        x, y = _grid(size)
        theta = math.radians(angle + rng.uniform(-15, 15))
        freq = rng.uniform(2, 6) / size
        phase = rng.uniform(0, 2 * math.pi)
        wave = np.sin(2 * math.pi * freq * (x * math.cos(theta) + y * math.sin(theta)) + phase)
        if rng.random() < 0.5:
            wave = np.clip(wave * 4, -1, 1)  # square-ish stripes
        return 0.5 + 0.5 * wave

    return draw


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(2 * size)  # 2x supersampling, then 2x2 average
    period = 2 * rng.uniform(4, 10)
    theta = rng.uniform(0, math.pi / 2)
    u = x * math.cos(theta) + y * math.sin(theta) + rng.uniform(0, period)
    w = -x * math.sin(theta) + y * math.cos(theta) + rng.uniform(0, period)
    v = (np.floor(u / period) + np.floor(w / period)) % 2
    return v.reshape(size, 2, size, 2).mean(axis=(1, 3))


def _dots(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    v = np.zeros((size, size))
    for _ in range(int(rng.integers(6, 21))):
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.5, 3)
        v = np.maximum(v, np.clip(r - np.hypot(x - cx, y - cy) + 0.5, 0, 1))
    return v


def _rings(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    freq = rng.uniform(3, 7) / size
    return 0.5 + 0.5 * np.sin(2 * math.pi * freq * np.hypot(x - cx, y - cy) + rng.uniform(0, 6.3))


def _cells(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    pts = rng.uniform(0, size, (int(rng.integers(6, 15)), 2))
    d = np.sort(np.hypot(x[..., None] - pts[:, 0], y[..., None] - pts[:, 1]), axis=-1)
    return np.clip(1 - (d[..., 1] - d[..., 0]) / rng.uniform(1, 2), 0, 1)


def _ifs(rng: np.random.Generator, size: int) -> np.ndarray:
    k = int(rng.integers(3, 5))
    maps = []
    for _ in range(k):
        a = rng.normal(size=(2, 2))
        a *= rng.uniform(0.3, 0.7) / np.linalg.norm(a, 2)  # contractive: largest sv < 0.7
        maps.append((a, rng.uniform(-1, 1, 2)))
    n = 6000
    choice = rng.integers(k, size=n)
    pts = np.zeros((n, 2))
    p = np.zeros(2)
    for i in range(n):
        a, b = maps[choice[i]]
        p = a @ p + b
        pts[i] = p
    pts = pts[50:]  # drop the transient
    lo, hi = pts.min(0), pts.max(0)
    span = max(float((hi - lo).max()), 1e-9)
    ij = ((pts - lo) / span * (size - 1) * 0.9 + size * 0.05).astype(int)
    hist = np.zeros((size, size))
    np.add.at(hist, (ij[:, 1], ij[:, 0]), 1.0)
    v = np.log1p(hist)
    return v / max(float(v.max()), 1e-9)


def _noise(beta: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
        f[0, 0] = 1.0
        spectrum = np.fft.fft2(rng.normal(size=(size, size))) / f ** (beta / 2)
        spectrum[0, 0] = 0.0
        z = np.real(np.fft.ifft2(spectrum))
        z /= max(float(z.std()), 1e-9)
        return np.clip(0.5 + 0.18 * z, 0, 1)

    return draw


_DRAW: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "grating_0": _grating(0),
    "grating_60": _grating(60),
    "grating_120": _grating(120),
    "checker": _checker,
    "dots": _dots,
    "rings": _rings,
    "cells": _cells,
    "ifs": _ifs,
    "noise_fine": _noise(0.5),
    "noise_coarse": _noise(2.5),
}
CLASSES: tuple[str, ...] = tuple(_DRAW)


def render(name: str, rng: np.random.Generator, *, size: int = 32) -> np.ndarray:
    """One image of texture class ``name``: uint8 ``(size, size)``, parameters from ``rng``.

    >>> img = render("checker", np.random.default_rng(0))
    >>> img.shape, img.dtype
    ((32, 32), dtype('uint8'))
    """
    draw = _DRAW.get(name)
    if draw is None:
        raise InvalidArgumentError(f"unknown texture class {name!r}; choose from {CLASSES}")
    if not isinstance(size, int) or size < 8:
        raise InvalidArgumentError(f"size must be an int >= 8, got {size!r}")
    v = np.clip(draw(rng, size), 0.0, 1.0)
    contrast = rng.uniform(0.6, 1.0)
    v = rng.uniform(0.0, 1.0 - contrast) + contrast * v
    return np.round(v * 255).astype(np.uint8)


def _check_classes(classes: Iterable[str]) -> tuple[str, ...]:
    names = tuple(classes)
    if not names:
        raise InvalidArgumentError(f"classes is empty; choose from {CLASSES}")
    unknown = [n for n in names if n not in _DRAW]
    if unknown:
        raise InvalidArgumentError(f"unknown texture classes {unknown}; choose from {CLASSES}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"duplicate texture classes in {names}")
    return names


def render_set(
    classes: Iterable[str] = CLASSES,
    per_class: int = 10,
    *,
    seed: int = 0,
    stream: int = 0,
    size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class: ``(images uint8 (N, size, size), labels int64)``.

    Labels are positions in ``classes``; class ``c``'s images depend only on
    ``(seed, stream, c)``.

    >>> x, y = render_set(["dots", "ifs"], 2, seed=3)
    >>> x.shape, y.tolist()
    ((4, 32, 32), [0, 0, 1, 1])
    >>> bool(np.array_equal(x[2:], render_set(["ifs"], 2, seed=3)[0]))
    True
    """
    names = _check_classes(classes)
    if not isinstance(per_class, int) or per_class < 1:
        raise InvalidArgumentError(f"per_class must be a positive int, got {per_class!r}")
    images = np.empty((len(names) * per_class, size, size), np.uint8)
    for i, name in enumerate(names):
        rng = np.random.default_rng([int(seed), int(stream), CLASSES.index(name)])
        for j in range(per_class):
            images[i * per_class + j] = render(name, rng, size=size)
    return images, np.repeat(np.arange(len(names), dtype=np.int64), per_class)


def export_imagefolder(
    out_dir: str | os.PathLike[str],
    *,
    classes: Iterable[str] = CLASSES,
    per_class: int = 10,
    val_per_class: int = 30,
    seed: int = 0,
    size: int = 32,
    split: Sequence[str] = ("train", "val"),
) -> Path:
    """Write texture classes as an ImageFolder tree ``out_dir/<split>/<class>/*.png`` (RGB).

    The first split folder gets ``per_class`` images per class (stream 0), the second
    ``val_per_class`` (stream 1); with one split name only the first. Idempotent and
    atomic like :func:`zoo_core_plugins.zoonet.digits.export_imagefolder` (marker
    ``.zoo_textures.json``).
    """
    names = _check_classes(classes)
    split = check_split_names(split)
    if len(split) > 2:
        raise InvalidArgumentError(f"split must name one or two folders, got {split!r}")
    counts = (per_class, val_per_class)[: len(split)]
    for n in counts:
        if not isinstance(n, int) or n < 1:
            raise InvalidArgumentError(f"images per class must be positive ints, got {counts}")
    marker = {
        "format": _FORMAT,
        "dataset": "zoo_core_plugins.zoonet.textures",
        "classes": list(names),
        "counts": dict(zip(split, counts, strict=True)),
        "seed": seed,
        "size": size,
    }

    def write(tmp: Path) -> None:
        for stream, (folder, n) in enumerate(zip(split, counts, strict=True)):
            for name in names:
                d = tmp / folder / name
                d.mkdir(parents=True)
                images, _ = render_set([name], n, seed=seed, stream=stream, size=size)
                for k, img in enumerate(to_rgb_array(images)):
                    Image.fromarray(img).save(d / f"texture_{k:04d}.png", format="PNG")

    return export_tree(out_dir, MARKER, marker, write)
