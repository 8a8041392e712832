"""Stop 24's second fresh part for ``bench_auto.py`` (fresh11), registered in
:data:`bench_auto_tasks.TASKS` on import (with the earlier parts, which it imports).

fresh11 was written after fresh10 had run, blind to any result, with no rule changed. Six
families not in any earlier part, drawn, like the rest, from data inside installed
packages:

- ``glyphs-squashed``: five pretraining glyph classes squeezed to 40-55% of their height
  or of their width (either, at random), centred on the canvas (input-level: aspect
  ratio), 10 per class;
- ``digits5-9-keystone``: digits 5-9 under a keystone (perspective) warp, the top or the
  bottom edge narrowed to 45-65% of the width (input-level: a projective warp), 10 per
  class;
- ``digits-parity``: 2 classes, the even digits (0, 2, 4, 6, 8) against the odd ones
  (1, 3, 5, 7, 9) (output-level: known digit classes grouped by parity, a grouping with
  no visual rule), 10 per class;
- ``photo-saturation``: a crop turned grey, left as is or made vivid (PIL's colour
  enhance at 0, 1 or 2.5: how colourful, not what), 40 per class;
- ``photo-near-far``: two dots of random colours on a crop, 6-10, 20-26 or 36-46 px apart
  (a distance between two marks), 50 per class;
- ``photo-filled``: a shape (circle, square, triangle, cross) filled or only outlined
  (2 px; a fill property of any shape), 100 per class (plenty).
"""

from __future__ import annotations

from typing import Any

from bench_auto_tasks import SHAPES, SIZE, _digit_task, _photo_task, fill_shape
from bench_auto_tasks_stop21 import _glyph_task
from bench_auto_tasks_stop24 import TASKS, _digit_groups

__all__ = ["TASKS"]

PARITY = ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))


def _squashed(x: Any, rng: Any) -> Any:
    """Resized to 40-55% of its height (or, at random, of its width) and centred on a
    black canvas."""
    import numpy as np
    from PIL import Image

    short = int(round(SIZE * float(rng.uniform(0.40, 0.55))))
    size = (SIZE, short) if rng.random() < 0.5 else (short, SIZE)  # (width, height)
    small = Image.fromarray(x).resize(size, Image.BILINEAR)
    canvas = Image.new("RGB", (SIZE, SIZE))
    canvas.paste(small, ((SIZE - size[0]) // 2, (SIZE - size[1]) // 2))
    return np.asarray(canvas)


def _keystone(x: Any, rng: Any) -> Any:
    """A perspective warp: the top (or, at random, the bottom) edge narrowed to 45-65% of
    the width, the other edge kept; black where the warp uncovers the canvas."""
    import numpy as np
    from PIL import Image

    # the source quadrilateral (upper left, lower left, lower right, upper right) that
    # fills the output square: reaching past the image on one edge narrows that edge
    d = SIZE * (1 / float(rng.uniform(0.45, 0.65)) - 1) / 2
    if rng.random() < 0.5:
        quad = (-d, 0, 0, SIZE, SIZE, SIZE, SIZE + d, 0)
    else:
        quad = (0, 0, -d, SIZE, SIZE + d, SIZE, SIZE, 0)
    img = Image.fromarray(x).transform((SIZE, SIZE), Image.QUAD, quad, Image.BILINEAR)
    return np.asarray(img)


def _saturation_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: colour saturation times 0 (grey), 1 or 2.5 (PIL's ImageEnhance.Color)."""
    from PIL import ImageEnhance

    return ImageEnhance.Color(img).enhance((0.0, 1.0, 2.5)[k])


def _near_far_label(img: Any, k: int, rng: Any) -> Any:
    """Two dots (radius 3 px, random colours) whose centres are 6-10, 20-26 or 36-46 px
    apart, at a random place and direction."""
    import numpy as np
    from PIL import ImageDraw

    lo, hi = ((6, 10), (20, 26), (36, 46))[k]
    while True:  # both dots wholly on the canvas
        dist, angle = float(rng.uniform(lo, hi)), float(rng.uniform(0, 2 * np.pi))
        ax, ay = (int(v) for v in rng.integers(4, SIZE - 4, size=2))
        bx, by = int(round(ax + dist * np.cos(angle))), int(round(ay + dist * np.sin(angle)))
        if 4 <= bx < SIZE - 4 and 4 <= by < SIZE - 4:
            break
    d = ImageDraw.Draw(img)
    for px, py in ((ax, ay), (bx, by)):
        d.ellipse((px - 3, py - 3, px + 3, py + 3),
                  fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return img


def _filled_label(img: Any, k: int, rng: Any) -> Any:
    """A random shape, radius 9-19 px, in a random colour: class 0 filled, class 1 only
    its outline, 2 px wide (a cross: the outline of its 12-sided boundary)."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    r = int(rng.integers(9, 20))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    bar = max(4, r // 3)  # the cross's half-width: room inside its outline
    if k == 0:
        fill_shape(d, shape, cx, cy, r, colour, bar=bar)
        return img
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, outline=colour, width=2)
    elif shape == "square":
        d.rectangle(box, outline=colour, width=2)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], outline=colour,
                  width=2)
    else:
        d.polygon([(cx - bar, cy - r), (cx + bar, cy - r), (cx + bar, cy - bar),
                   (cx + r, cy - bar), (cx + r, cy + bar), (cx + bar, cy + bar),
                   (cx + bar, cy + r), (cx - bar, cy + r), (cx - bar, cy + bar),
                   (cx - r, cy + bar), (cx - r, cy - bar), (cx - bar, cy - bar)],
                  outline=colour, width=2)
    return img


TASKS.update({
    "glyphs-squashed": _glyph_task(_squashed),
    "digits5-9-keystone": _digit_task(_keystone),
    "digits-parity": _digit_groups(PARITY, 193, ("even", "odd")),
    "photo-saturation": _photo_task(_saturation_label, 3, ("grey", "as-is", "vivid"),
                                    salt=179),
    "photo-near-far": _photo_task(_near_far_label, 3, ("near", "mid", "far"), salt=181),
    "photo-filled": _photo_task(_filled_label, 2, ("filled", "outlined"), salt=191),
})
