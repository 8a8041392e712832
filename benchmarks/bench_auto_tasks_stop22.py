"""Stop 22's fresh parts for ``bench_auto.py`` (fresh5, fresh6, fresh7), registered in
:data:`bench_auto_tasks.TASKS` on import (with stop 21's parts, which it imports).

fresh5 was written after stop 21 adopted candidate A (scarce + similar trains ``partial:1``
instead of ``linear_probe``) and before it first ran, with no rule changed: it tests the
rules as they stand on task families none of them was written or checked on. Drawn, like
the rest, from data inside installed packages (scikit-learn's photos and digits, the zoonet
glyphs). What each task measures:

- ``glyphs-blurred``: five pretraining glyph classes under a Gaussian blur of radius 2.5
  (input-level: known classes, lost edges);
- ``glyphs-thin``: the same, strokes thinned by a 3 px minimum filter, then drawn dark on
  a light ground (input-level: stroke width and polarity together);
- ``glyph-triples``: 3 classes, each the union of 3 pretraining glyph classes
  (output-level: the features exist; the labels group them anew);
- ``digits0-4-jpeg``: digits 0-4 saved as JPEG at quality 8 (input-level: block
  artefacts);
- ``photo-brightness``: a photo crop scaled to 0.55, 0.8 or 1.15 of its brightness (a
  global pixel statistic, not an object);
- ``photo-shape-colour``: a shape drawn on a crop, its class the shape's dominant channel
  (red, green or blue), at 100 images per class (plenty; the shape is irrelevant).

fresh6 was written after candidate C (``bench_auto_rules.py``) and its criterion were
committed, and before it first ran, with the rules unchanged (A in force):

- ``digits5-9-shifted``: digits shrunk to 40 px and placed anywhere on the canvas
  (input-level: position);
- ``glyphs-sheared``: five pretraining glyph classes sheared by +-0.35-0.6 (input-level:
  geometry);
- ``glyphs-faint``: the same, strokes at 25-45 grey levels above a ground of 40-90
  (input-level: contrast);
- ``digits0-4-dotted``: digits 0-4 seen through a grid of 2 px dots every 4 px
  (input-level: sampling);
- ``photo-which``: which photo a crop comes from (scikit-learn's china or flower), 20 per
  class (natural images, scarce);
- ``photo-tiling``: a crop tiled 2x2, 3x3 or 4x4 from a smaller copy of itself, 30 per
  class (a repetition, not an object).

fresh7 was written after candidate D (``bench_auto_rules.py``) and its criterion were
committed, and before it first ran, with the rules unchanged (A in force). Scarce glyph
and digit tasks, 10 images per class:

- ``glyph-halves``: 2 classes, each the union of 5 pretraining glyph classes (output-level);
- ``digit-pairs``: digits 0-5 in 3 classes, {0, 1}, {2, 3}, {4, 5} (output-level, on
  classes the pretraining never labelled);
- ``glyphs-colour``: five glyph classes, strokes in one random colour on a ground of
  another (input-level: colour);
- ``glyphs-salt``: the same, 12% of the pixels set to black or white (input-level:
  impulse noise);
- ``glyphs-shifted``: the same, shrunk to 40 px and placed anywhere (position);
- ``glyphs-bold``: the same, strokes thickened by a 3 px maximum filter (stroke width).
"""

from __future__ import annotations

from typing import Any

from bench_auto_tasks import (
    SHAPES,
    SIZE,
    Generated,
    _crop,
    _digit_task,
    _photo_task,
    _photos,
    fill_shape,
)
from bench_auto_tasks_stop21 import TASKS, _glyph_task, _glyph_unions

__all__ = ["TASKS"]


def _glyph_blurred(x: Any, rng: Any) -> Any:
    """Gaussian blur of radius 2.5."""
    import numpy as np
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(2.5)))


def _glyph_thin(x: Any, rng: Any) -> Any:
    """Strokes thinned by a 3 px minimum filter, then inverted: dark, thin strokes on a
    light ground."""
    import numpy as np
    from PIL import Image, ImageFilter

    return 255 - np.asarray(Image.fromarray(x).filter(ImageFilter.MinFilter(3)))


def _jpeg(x: Any, rng: Any) -> Any:
    """Saved and read back as JPEG at quality 8."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=8)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def _brightness_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: the crop's pixels times 0.55, 0.8 or 1.15."""
    import numpy as np
    from PIL import Image

    x = np.asarray(img, np.float32) * (0.55, 0.8, 1.15)[k]
    return Image.fromarray(x.clip(0, 255).astype(np.uint8))


def _shape_colour_label(img: Any, k: int, rng: Any) -> Any:
    """A random shape (circle, square, triangle, cross), radius 9-19 px, filled with channel
    k at 170-255 and the other two at 0-90."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    r = int(rng.integers(9, 20))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    colour = [int(v) for v in rng.integers(0, 91, size=3)]
    colour[k] = int(rng.integers(170, 256))
    fill_shape(d, shape, cx, cy, r, tuple(colour), bar=max(2, r // 3))
    return img


TASKS.update({
    "glyphs-blurred": _glyph_task(_glyph_blurred),
    "glyphs-thin": _glyph_task(_glyph_thin),
    "glyph-triples": _glyph_unions((3, 3, 3), 83, tuple(f"triple{k}" for k in range(3))),
    "digits0-4-jpeg": _digit_task(_jpeg, (0, 1, 2, 3, 4)),
    "photo-brightness": _photo_task(_brightness_label, 3, ("dark", "dim", "bright"),
                                    salt=89),
    "photo-shape-colour": _photo_task(_shape_colour_label, 3, ("red", "green", "blue"),
                                      salt=97),
})


# -- the sixth fresh part (stop 22): written after candidate C and its criterion ----------

def _shifted(x: Any, rng: Any) -> Any:
    """Shrunk to 40 px and pasted anywhere on a black 64 px canvas."""
    import numpy as np
    from PIL import Image

    side = 40
    small = Image.fromarray(x).resize((side, side), Image.BILINEAR)
    canvas = Image.new("RGB", (SIZE, SIZE))
    canvas.paste(small, tuple(int(v) for v in rng.integers(0, SIZE - side + 1, size=2)))
    return np.asarray(canvas)


def _sheared(x: Any, rng: Any) -> Any:
    """Sheared horizontally by 0.35-0.6 either way, about the centre."""
    import numpy as np
    from PIL import Image

    k = float(rng.uniform(0.35, 0.6)) * (1 if rng.random() < 0.5 else -1)
    img = Image.fromarray(x).transform((SIZE, SIZE), Image.AFFINE,
                                       (1, k, -k * SIZE / 2, 0, 1, 0), Image.BILINEAR)
    return np.asarray(img)


def _faint(x: Any, rng: Any) -> Any:
    """Strokes 25-45 grey levels above a ground of 40-90."""
    import numpy as np

    ground = float(rng.uniform(40, 90))
    lift = float(rng.uniform(25, 45))
    return (ground + x.astype(np.float32) / 255.0 * lift).clip(0, 255).astype(np.uint8)


def _dotted(x: Any, rng: Any) -> Any:
    """Only 2 x 2 px dots on a 4 px grid kept (random phase)."""
    import numpy as np

    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    py, px = (int(v) for v in rng.integers(0, 4, size=2))
    mask = (((yy + py) % 4) < 2) & (((xx + px) % 4) < 2)
    return (x * mask[..., None]).astype(np.uint8)


def _photo_which(per_class: int, val_per_class: int, seed: int) -> Generated:
    """Class k: a random crop of scikit-learn's photo k (china, flower)."""
    import numpy as np

    photos = _photos()
    out = []
    for stream, n in ((0, per_class), (1, val_per_class)):
        rng = np.random.default_rng([seed, 101, stream])
        xs, ys = [], []
        for k, photo in enumerate(photos):
            for _ in range(n):
                xs.append(np.asarray(_crop(rng, [photo])))
                ys.append(k)
        out += [np.stack(xs), np.asarray(ys)]
    return out[0], out[1], out[2], out[3], ("china", "flower")


def _tiling_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: the crop shrunk and tiled 2x2, 3x3 or 4x4 to fill the canvas."""
    from PIL import Image

    n = k + 2
    side = -(-SIZE // n)
    tile = img.resize((side, side), Image.BILINEAR)
    out = Image.new("RGB", (SIZE, SIZE))
    for i in range(n):
        for j in range(n):
            out.paste(tile, (i * side, j * side))
    return out


TASKS.update({
    "digits5-9-shifted": _digit_task(_shifted),
    "glyphs-sheared": _glyph_task(_sheared),
    "glyphs-faint": _glyph_task(_faint),
    "digits0-4-dotted": _digit_task(_dotted, (0, 1, 2, 3, 4)),
    "photo-which": _photo_which,
    "photo-tiling": _photo_task(_tiling_label, 3, ("2x2", "3x3", "4x4"), salt=103),
})


# -- the seventh fresh part (stop 22): written after candidate D and its criterion --------

def _digit_pairs(per_class: int, val_per_class: int, seed: int) -> Generated:
    """Digits 0-5 as 3 classes, {0, 1}, {2, 3}, {4, 5}: each class half one digit, half the
    other."""
    import numpy as np

    make = _digit_task(lambda x, rng: x, (0, 1, 2, 3, 4, 5))
    x_tr, y_tr, x_va, y_va, _ = make(-(-per_class // 2), -(-val_per_class // 2), seed)
    out = []
    for xs, ys, n in ((x_tr, y_tr, per_class), (x_va, y_va, val_per_class)):
        keep = []
        for k in range(3):
            a = np.flatnonzero(ys == 2 * k)
            b = np.flatnonzero(ys == 2 * k + 1)
            keep += list(a[:-(-n // 2)]) + list(b[:n // 2])
        keep = np.asarray(keep)
        out += [xs[keep], ys[keep] // 2]
    return out[0], out[1], out[2], out[3], ("01", "23", "45")


def _glyph_colour(x: Any, rng: Any) -> Any:
    """Strokes in one random colour, the ground in another."""
    import numpy as np

    a = x[..., :1].astype(np.float32) / 255.0
    ink, ground = (rng.integers(0, 256, size=3).astype(np.float32) for _ in range(2))
    return (a * ink + (1 - a) * ground).clip(0, 255).astype(np.uint8)


def _salt(x: Any, rng: Any) -> Any:
    """12% of the pixels set to black or white."""
    import numpy as np

    x = x.copy()
    hit = rng.random(x.shape[:2]) < 0.12
    x[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)[:, None].astype(np.uint8)
    return x


def _bold_glyph(x: Any, rng: Any) -> Any:
    """Strokes thickened by a 3 px maximum filter."""
    import numpy as np
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(x).filter(ImageFilter.MaxFilter(3)))


TASKS.update({
    "glyph-halves": _glyph_unions((5, 5), 107, ("half0", "half1")),
    "digit-pairs": _digit_pairs,
    "glyphs-colour": _glyph_task(_glyph_colour),
    "glyphs-salt": _glyph_task(_salt),
    "glyphs-shifted": _glyph_task(_shifted),
    "glyphs-bold": _glyph_task(_bold_glyph),
})
