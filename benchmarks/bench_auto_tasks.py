"""Harder tasks for ``bench_auto.py`` (issue 21): photos, input- and output-level shifts.

Every task is made offline from data inside installed packages (scikit-learn's two sample
photos and handwritten digits, the glyphs the zoonet plugin renders from matplotlib's
fonts), seeded, and written as an ImageFolder ``root/{train,val}/<class>/*.png``. The zoonet
pretraining is white glyphs on black at 32 px; relative to it:

- ``photo-shapes``: one of 4 shapes (circle, square, triangle, cross) in a random colour,
  size and place on a 64 px crop of a photo (new domain, hard: clutter);
- ``photo-rotation``: 64 px photo crops, class = rotation 0/90/180/270 (nothing
  glyph-like: the plenty + dissimilar cell);
- ``digits-inverted``: digits 5-9, black on white (input-level: contrast);
- ``digits-blur``: digits 5-9, Gaussian blur of radius 2 at 64 px (input-level: frequency);
- ``digits-colour``: digits 5-9, a coloured stroke on a coloured ground, the RGB channels
  permuted per image (input-level: colour);
- ``digits-rotated``: digits 5-9 turned by 90 degrees +- 15 (input-level: geometry);
- ``glyph-groups``: 5 classes, each the union of 4 *pretraining* glyph classes
  (output-level: known features, new groupings).

The fresh part of stop 19 adds task families no rule was tuned or checked on when it first
ran (below); stop 21's three fresh parts are in ``bench_auto_tasks_stop21.py``, stop
22's four in ``bench_auto_tasks_stop22.py`` and ``bench_auto_tasks_stop22b.py``, stop 23's
in ``bench_auto_tasks_stop23.py``, stop 24's three in ``bench_auto_tasks_stop24.py``,
``bench_auto_tasks_stop24b.py`` and ``bench_auto_tasks_stop24c.py`` and stop 25's in
``bench_auto_tasks_stop25.py``, which register them in :data:`TASKS` when imported
(``bench_auto.py`` imports the last, which imports the others).

Images are 64 px (the digits upscaled); the model's own transform resizes them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZE = 64
Generated = tuple[Any, Any, Any, Any, tuple[str, ...]]  # x_tr, y_tr, x_va, y_va, classes


@functools.lru_cache(maxsize=1)
def _photos() -> list[Any]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)  # china.jpg, flower.jpg: 427 x 640 x 3


def _crop(rng: Any, photos: list[Any], size: int = SIZE) -> Any:
    """A random square crop (64-200 px of the photo) resized to ``size``, as a PIL image."""
    from PIL import Image

    photo = photos[int(rng.integers(len(photos)))]
    side = int(rng.integers(64, 200))
    y = int(rng.integers(0, photo.shape[0] - side))
    x = int(rng.integers(0, photo.shape[1] - side))
    return Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size),
                                                                 Image.BILINEAR)


SHAPES = ("circle", "square", "triangle", "cross")


def _draw_shape(img: Any, shape: str, rng: Any) -> Any:
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    r = int(rng.integers(9, 20))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    fill_shape(d, shape, cx, cy, r, colour, bar=max(3, r // 3))
    return img


def fill_shape(d: Any, shape: str, cx: int, cy: int, r: int, fill: tuple,
               bar: int) -> None:
    """Draw ``shape`` of radius ``r`` at (cx, cy), filled; a cross's bars are ``bar`` px
    from its axis."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        d.rectangle((cx - r, cy - bar, cx + r, cy + bar), fill=fill)
        d.rectangle((cx - bar, cy - r, cx + bar, cy + r), fill=fill)


def _photo_task(label_fn: Callable[[Any, int, Any], Any], n_classes: int,
                names: tuple[str, ...], salt: int = 41) -> Callable[[int, int, int], Generated]:
    def make(per_class: int, val_per_class: int, seed: int) -> Generated:
        import numpy as np

        photos = _photos()
        out = []
        for stream, n in ((0, per_class), (1, val_per_class)):
            rng = np.random.default_rng([seed, salt, stream])
            xs, ys = [], []
            for k in range(n_classes):
                for _ in range(n):
                    xs.append(np.asarray(label_fn(_crop(rng, photos), k, rng)))
                    ys.append(k)
            out += [np.stack(xs), np.asarray(ys)]
        return out[0], out[1], out[2], out[3], names

    return make


def _shape_label(img: Any, k: int, rng: Any) -> Any:
    return _draw_shape(img, SHAPES[k], rng)


def _rotation_label(img: Any, k: int, rng: Any) -> Any:
    return img.rotate(90 * k)


def _digit_task(transform: Callable[[Any, Any], Any],
                digits_used: tuple[int, ...] = (5, 6, 7, 8, 9)
                ) -> Callable[[int, int, int], Generated]:
    """Digits (5-9) at 64 px, each image passed through ``transform(rgb uint8, rng)``."""

    def make(per_class: int, val_per_class: int, seed: int) -> Generated:
        import numpy as np

        from zoo_core_plugins.zoonet import digits

        images, labels = digits.load_digits_arrays()
        rng = np.random.default_rng([seed, 43])
        x_tr, y_tr, x_va, y_va = [], [], [], []
        for k, c in enumerate(digits_used):
            pos = rng.permutation(np.flatnonzero(labels == c))
            val, train = pos[:val_per_class], pos[val_per_class:val_per_class + per_class]
            x_va += [transform(x, rng) for x in digits.to_rgb_array(images[val], SIZE)]
            x_tr += [transform(x, rng) for x in digits.to_rgb_array(images[train], SIZE)]
            y_va += [k] * len(val)
            y_tr += [k] * len(train)
        return (np.stack(x_tr), np.asarray(y_tr), np.stack(x_va), np.asarray(y_va),
                tuple(str(c) for c in digits_used))

    return make


def _inverted(x: Any, rng: Any) -> Any:
    return 255 - x


def _blur(x: Any, rng: Any) -> Any:
    import numpy as np
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(2)))


def _colour(x: Any, rng: Any) -> Any:
    import numpy as np

    v = x[..., :1].astype(np.float32) / 255.0
    fg = np.asarray([230, 40, 40], np.float32)
    bg = np.asarray([30, 150, 200], np.float32)
    img = v * fg + (1 - v) * bg
    return img[..., rng.permutation(3)].clip(0, 255).astype(np.uint8)


def _rotated(x: Any, rng: Any) -> Any:
    import numpy as np
    from PIL import Image

    angle = 90 + float(rng.uniform(-15, 15))
    return np.asarray(Image.fromarray(x).rotate(angle, resample=Image.BILINEAR))


def _glyph_groups(per_class: int, val_per_class: int, seed: int) -> Generated:
    """5 classes, each 4 pretraining glyph classes drawn by the seed (an output-level
    shift: the features exist; the labels group them anew)."""
    import numpy as np

    from zoo_core_plugins.zoonet import glyphs

    rng = np.random.default_rng([seed, 47])
    pool = list(glyphs.PRETRAIN_CLASSES)
    chosen = [pool[i] for i in rng.choice(len(pool), 20, replace=False)]
    groups = [chosen[4 * k:4 * k + 4] for k in range(5)]
    out = []
    for stream, n in ((0, per_class), (1, val_per_class)):
        xs, ys = [], []
        for k, group in enumerate(groups):
            # n images per class, spread over its 4 glyphs
            counts = [n // 4 + (1 if i < n % 4 else 0) for i in range(4)]
            for c, m in zip(group, counts, strict=True):
                if m:
                    x, _ = glyphs.render_set(c, m, seed=seed, stream=stream, size=SIZE)
                    xs.append(np.repeat(x[..., None], 3, axis=-1))
                    ys += [k] * m
        out += [np.concatenate(xs), np.asarray(ys)]
    return out[0], out[1], out[2], out[3], tuple(f"group{k}" for k in range(5))


# -- the fresh part (stop 19): task families no rule was tuned or checked on ---------------

def _quadrant_label(img: Any, k: int, rng: Any) -> Any:
    """A small disk of a random colour in quadrant ``k`` (where, not what)."""
    from PIL import ImageDraw

    r = int(rng.integers(4, 8))
    half = SIZE // 2
    cx = int(rng.integers(r + 1, half - r - 1)) + half * (k % 2)
    cy = int(rng.integers(r + 1, half - r - 1)) + half * (k // 2)
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return img


def _count_label(img: Any, k: int, rng: Any) -> Any:
    """``k + 1`` small squares of random colours at random places (how many)."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    for _ in range(k + 1):
        r = int(rng.integers(3, 6))
        cx, cy = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
        d.rectangle((cx - r, cy - r, cx + r, cy + r),
                    fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return img


def _photo_scale(per_class: int, val_per_class: int, seed: int) -> Generated:
    """3 classes: a photo crop of 48, 120 or 300 px side, resized to 64 (the scale of the
    scene; nothing glyph-like: plenty + dissimilar)."""
    import numpy as np
    from PIL import Image

    photos = _photos()
    sides = (48, 120, 300)
    out = []
    for stream, n in ((0, per_class), (1, val_per_class)):
        rng = np.random.default_rng([seed, 53, stream])
        xs, ys = [], []
        for k, side in enumerate(sides):
            for _ in range(n):
                photo = photos[int(rng.integers(len(photos)))]
                y = int(rng.integers(0, photo.shape[0] - side))
                x = int(rng.integers(0, photo.shape[1] - side))
                crop = Image.fromarray(photo[y:y + side, x:x + side])
                xs.append(np.asarray(crop.resize((SIZE, SIZE), Image.BILINEAR)))
                ys.append(k)
        out += [np.stack(xs), np.asarray(ys)]
    return out[0], out[1], out[2], out[3], tuple(f"side{s}" for s in sides)


def _noisy(x: Any, rng: Any) -> Any:
    import numpy as np

    return (x.astype(np.float32) + rng.normal(0, 70, size=x.shape)).clip(0, 255).astype(
        np.uint8)


def _edges(x: Any, rng: Any) -> Any:
    import numpy as np
    from PIL import Image, ImageFilter

    soft = Image.fromarray(x).filter(ImageFilter.GaussianBlur(2))  # outlines, not 8x8 blocks
    edges = np.asarray(soft.filter(ImageFilter.FIND_EDGES)).astype(np.float32)
    edges[:2], edges[-2:], edges[:, :2], edges[:, -2:] = 0, 0, 0, 0  # the filter's border
    return (edges * (255.0 / max(float(edges.max()), 1.0))).clip(0, 255).astype(np.uint8)


TASKS: dict[str, Callable[[int, int, int], Generated]] = {
    "photo-shapes": _photo_task(_shape_label, 4, SHAPES),
    "photo-rotation": _photo_task(_rotation_label, 4, ("r0", "r90", "r180", "r270")),
    "digits-inverted": _digit_task(_inverted),
    "digits-blur": _digit_task(_blur),
    "digits-colour": _digit_task(_colour),
    "digits-rotated": _digit_task(_rotated),
    "glyph-groups": _glyph_groups,
    "photo-quadrant": _photo_task(_quadrant_label, 4, ("tl", "tr", "bl", "br")),
    "photo-count": _photo_task(_count_label, 3, ("one", "two", "three")),
    "photo-scale": _photo_scale,
    "digits0-4-noise": _digit_task(_noisy, (0, 1, 2, 3, 4)),
    "digits0-4-edges": _digit_task(_edges, (0, 1, 2, 3, 4)),
}


def write_task(name: str, per_class: int, *, seed: int, val_per_class: int,
               cache: Path) -> Path:
    """Write task ``name`` as an ImageFolder under ``cache`` (idempotent) and return it."""
    from PIL import Image

    root = cache / f"bench-{name}-pc{per_class}-v{val_per_class}-seed{seed}"
    params = {"task": name, "per_class": per_class, "val_per_class": val_per_class,
              "seed": seed, "size": SIZE}
    try:
        if json.loads((root / ".bench_task.json").read_text()) == params:
            return root
    except (OSError, ValueError):
        pass
    x_tr, y_tr, x_va, y_va, classes = TASKS[name](per_class, val_per_class, seed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=cache))
    for split, xs, ys in (("train", x_tr, y_tr), ("val", x_va, y_va)):
        for i, (pixels, label) in enumerate(zip(xs, ys, strict=True)):
            d = tmp / split / classes[int(label)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(d / f"{i:05d}.png")
    (tmp / ".bench_task.json").write_text(json.dumps(params))
    try:  # another run wrote it meanwhile: keep theirs (it may be reading it)
        if json.loads((root / ".bench_task.json").read_text()) == params:
            shutil.rmtree(tmp)
            return root
    except (OSError, ValueError):
        pass
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root
