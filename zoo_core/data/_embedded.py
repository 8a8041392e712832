"""Embedded target tasks: real or synthetic image data made offline, written as ImageFolders.

Every task is rendered from data that ships inside installed packages (scikit-learn's
digits, the fonts inside matplotlib) or from a seeded formula, so the same name, size and
seed give the same pixels on any machine. They serve ``zoo finetune --compare`` (the four
cells of the transfer-learning table), ``benchmarks/bench_auto.py`` and ``zoo rank``.

| task | what | similar to the zoonet pretraining (glyphs)? |
|---|---|---|
| ``digits5-9`` / ``digits0-4`` | scikit-learn's handwritten digits | yes: strokes, never seen |
| ``glyphs-heldout`` | glyph classes left out of pretraining | yes: same renderer |
| ``textures`` | procedural textures | no |
| ``noise-bands`` | band-passed noise, class = frequency band x orientation | no |
| ``random-labels`` | noise images with labels drawn at random | nothing to learn |

>>> sorted(TASKS)[:3]
['digits0-4', 'digits5-9', 'glyphs-heldout']
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo_core.errors import InvalidArgumentError

MARKER = ".zoo_task.json"
FORMAT = 1
SIZE = 32
VAL_PER_CLASS = 40
NUM_CLASSES = 5

# name -> (description, generator(per_class, val_per_class, seed) -> arrays)
Generated = tuple[Any, Any, Any, Any, tuple[str, ...]]  # x_tr, y_tr, x_va, y_va, classes


def _digits(classes: tuple[int, ...]) -> Callable[[int | None, int, int], Generated]:
    def make(per_class: int | None, val_per_class: int, seed: int) -> Generated:
        import numpy as np

        from zoo_core_plugins.zoonet import digits

        images, labels = digits.load_digits_arrays()
        rng = np.random.default_rng([seed, 11])
        x_tr, y_tr, x_va, y_va = [], [], [], []
        for k, c in enumerate(classes):
            pos = rng.permutation(np.flatnonzero(labels == c))
            val, train = pos[:val_per_class], pos[val_per_class:]
            if per_class is not None:
                train = train[:per_class]
            x_va.append(digits.to_rgb_array(images[val], SIZE))
            x_tr.append(digits.to_rgb_array(images[train], SIZE))
            y_va += [k] * len(val)
            y_tr += [k] * len(train)
        return (np.concatenate(x_tr), np.asarray(y_tr), np.concatenate(x_va),
                np.asarray(y_va), tuple(str(c) for c in classes))

    return make


def _band_noise(rng: Any, n: int, band: tuple[float, float], angle: float | None) -> Any:
    """``n`` grey images of Gaussian noise kept in a radial frequency band (and, with
    ``angle``, a +-22.5 degree wedge of orientations), scaled to uint8."""
    import numpy as np

    fy = np.fft.fftfreq(SIZE)[:, None]
    fx = np.fft.fftfreq(SIZE)[None, :]
    radius = np.hypot(fx, fy)
    mask = (radius >= band[0]) & (radius < band[1])
    if angle is not None:
        theta = np.arctan2(fy, fx) % np.pi
        diff = np.abs((theta - angle + np.pi / 2) % np.pi - np.pi / 2)
        mask &= diff < np.pi / 8
    spec = np.fft.fft2(rng.normal(size=(n, SIZE, SIZE))) * mask
    img = np.real(np.fft.ifft2(spec))
    img /= img.std(axis=(1, 2), keepdims=True) + 1e-9
    return np.clip(128 + 48 * img, 0, 255).astype(np.uint8)


def _grey_to_rgb(x: Any) -> Any:
    import numpy as np

    return np.repeat(x[..., None], 3, axis=-1)


_HALF_PI = 1.5707963267948966
# (radial frequency band in cycles/pixel, orientation or None for all)
_BANDS = (((0.02, 0.12), None), ((0.12, 0.25), 0.0), ((0.12, 0.25), _HALF_PI),
          ((0.25, 0.5), 0.0), ((0.25, 0.5), _HALF_PI))


def _noise_bands(per_class: int | None, val_per_class: int, seed: int) -> Generated:
    import numpy as np

    n = 100 if per_class is None else per_class
    rng = np.random.default_rng([seed, 23])
    x_tr, y_tr, x_va, y_va = [], [], [], []
    for k, (band, angle) in enumerate(_BANDS):
        x_tr.append(_grey_to_rgb(_band_noise(rng, n, band, angle)))
        x_va.append(_grey_to_rgb(_band_noise(rng, val_per_class, band, angle)))
        y_tr += [k] * n
        y_va += [k] * val_per_class
    names = ("low", "mid-h", "mid-v", "high-h", "high-v")
    return np.concatenate(x_tr), np.asarray(y_tr), np.concatenate(x_va), np.asarray(y_va), names


def _random_labels(per_class: int | None, val_per_class: int, seed: int) -> Generated:
    import numpy as np

    n = 100 if per_class is None else per_class
    rng = np.random.default_rng([seed, 29])
    total_tr, total_va = n * NUM_CLASSES, val_per_class * NUM_CLASSES
    images = _band_noise(rng, total_tr + total_va, (0.02, 0.5), None)
    labels = np.concatenate([np.repeat(np.arange(NUM_CLASSES), n),
                             np.repeat(np.arange(NUM_CLASSES), val_per_class)])
    labels[:total_tr] = rng.permutation(labels[:total_tr])
    labels[total_tr:] = rng.permutation(labels[total_tr:])
    x = _grey_to_rgb(images)
    names = tuple(f"class{k}" for k in range(NUM_CLASSES))
    return x[:total_tr], labels[:total_tr], x[total_tr:], labels[total_tr:], names


def _rendered(module: str, pool: str) -> Callable[[int | None, int, int], Generated]:
    """A task rendered by the zoonet plugin (``render_set``): NUM_CLASSES classes drawn from
    the module's ``pool`` by the seed; train and val images from disjoint streams."""

    def make(per_class: int | None, val_per_class: int, seed: int) -> Generated:
        import importlib

        import numpy as np

        mod = importlib.import_module(module)
        candidates = getattr(mod, pool)
        rng = np.random.default_rng([seed, 31])
        classes = tuple(candidates[i] for i in sorted(
            rng.choice(len(candidates), NUM_CLASSES, replace=False)))
        n = 100 if per_class is None else per_class
        x_tr, y_tr = mod.render_set(classes, n, seed=seed, stream=0, size=SIZE)
        x_va, y_va = mod.render_set(classes, val_per_class, seed=seed, stream=1, size=SIZE)
        names = tuple(f"{i}-{ord(c):04x}" if len(c) == 1 else c for i, c in enumerate(classes))
        return _grey_to_rgb(x_tr), y_tr, _grey_to_rgb(x_va), y_va, names

    return make


TASKS: dict[str, tuple[str, Callable[[int | None, int, int], Generated]]] = {
    "digits5-9": ("scikit-learn digits 5-9 (never seen in pretraining)", _digits((5, 6, 7, 8, 9))),
    "digits0-4": ("scikit-learn digits 0-4 (never seen in pretraining)", _digits((0, 1, 2, 3, 4))),
    "glyphs-heldout": ("glyph classes held out of the zoonet pretraining",
                       _rendered("zoo_core_plugins.zoonet.glyphs", "HELDOUT_CLASSES")),
    "textures": ("procedural textures (dissimilar to glyphs)",
                 _rendered("zoo_core_plugins.zoonet.textures", "CLASSES")),
    "noise-bands": ("band-passed noise, class = frequency band x orientation", _noise_bands),
    "random-labels": ("noise images with random labels: nothing to learn", _random_labels),
}


def _write_png(path: Path, pixels: Any) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path, format="PNG", optimize=False)


def _written(root: Path, params: dict[str, Any]) -> bool:
    try:
        return bool(json.loads((root / MARKER).read_text()) == params)
    except (OSError, ValueError):
        return False


def embedded_task(name: str, per_class: int | None = None, *, seed: int = 0,
                  val_per_class: int = VAL_PER_CLASS,
                  cache: str | os.PathLike[str] | None = None) -> Path:
    """Write task ``name`` as ``<cache>/datasets/task-.../{train,val}/<class>/*.png``.

    ``per_class``: training images per class (``None``: all there are for digits, 100 for
    generated tasks). Idempotent (a marker records the parameters); written to a
    temporary folder and renamed, so it is never half written.
    """
    from zoo_core.weights._weights import cache_dir

    if name not in TASKS:
        import difflib

        close = difflib.get_close_matches(name, TASKS, n=3)
        raise InvalidArgumentError(
            f"unknown embedded task {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + f" Known: {', '.join(sorted(TASKS))}")
    if per_class is not None and (isinstance(per_class, bool) or per_class < 1):
        raise InvalidArgumentError(f"per_class must be a positive int, got {per_class!r}")
    base = Path(cache) if cache is not None else cache_dir() / "datasets"
    root = base / f"task-{name}-pc{per_class or 'all'}-v{val_per_class}-seed{seed}"
    params = {"format": FORMAT, "task": name, "per_class": per_class,
              "val_per_class": val_per_class, "seed": seed, "size": SIZE}
    if _written(root, params):
        return root
    x_tr, y_tr, x_va, y_va, classes = TASKS[name][1](per_class, val_per_class, seed)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=base))
    try:
        for split, xs, ys in (("train", x_tr, y_tr), ("val", x_va, y_va)):
            counters: dict[int, int] = {}
            for pixels, label in zip(xs, ys, strict=True):
                d = tmp / split / classes[int(label)]
                d.mkdir(parents=True, exist_ok=True)
                i = counters[int(label)] = counters.get(int(label), -1) + 1
                _write_png(d / f"{i:05d}.png", pixels)
        (tmp / MARKER).write_text(json.dumps(params))
        if _written(root, params):  # a concurrent run wrote it meanwhile: keep theirs, which
            shutil.rmtree(tmp, ignore_errors=True)  # that run may be reading
            return root
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
