"""Stop 24's third fresh part for ``bench_auto.py`` (fresh12), registered in
:data:`bench_auto_tasks.TASKS` on import (with the earlier parts, which it imports).

fresh12 was written after fresh11 had run, blind to any result, with no rule changed by
the commit that added it. Six families not in any earlier part, drawn, like the rest,
from data inside installed packages:

- ``glyphs-hollow``: five pretraining glyph classes with every stroke replaced by the
  2 px ring just outside it (a 5 px maximum filter less the glyph; input-level: strokes
  become outlines), 10 per class;
- ``digits0-4-fisheye``: digits 0-4 under a radial (fisheye) warp that magnifies the
  centre, the source radius the output one to a power of 1.5-2 (input-level: a
  non-linear warp), 10 per class;
- ``digits-mod3``: 3 classes, the ten digits grouped by their remainder mod 3 ({0, 3, 6,
  9}, {1, 4, 7}, {2, 5, 8}; output-level: known digit classes in a grouping with no
  visual rule), 10 per class;
- ``photo-posterize``: a crop with 8, 3 or 2 bits per channel (PIL's posterize: how many
  tones, not what), 40 per class;
- ``photo-left-of``: a circle and a square of random colours and sizes on a crop, the
  circle left or right of the square (a spatial relation between two marks), 50 per
  class;
- ``photo-fringes``: a crop as is, or with its red and blue channels moved 3-5 px
  apart sideways (colour fringes at edges: a misregistration of channels), 100 per
  class (plenty).
"""

from __future__ import annotations

from typing import Any

from bench_auto_tasks import SIZE, _digit_task, _photo_task
from bench_auto_tasks_stop21 import _glyph_task
from bench_auto_tasks_stop24 import _digit_groups
from bench_auto_tasks_stop24b import TASKS

__all__ = ["TASKS"]

MOD3 = ((0, 3, 6, 9), (1, 4, 7), (2, 5, 8))


def _hollow(x: Any, rng: Any) -> Any:
    """The ring just outside each stroke: a 5 px maximum filter of the glyph less the
    glyph itself (the strokes' own pixels dark)."""
    import numpy as np
    from scipy import ndimage

    g = x[..., 0].astype(np.int16)
    ring = (ndimage.maximum_filter(g, size=5) - g).clip(0, 255).astype(np.uint8)
    return np.repeat(ring[..., None], 3, axis=-1)


def _fisheye(x: Any, rng: Any) -> Any:
    """A radial warp about the centre: an output pixel at normalised radius r (0 at the
    centre, 1 at the middle of an edge) samples the input at r ** p, p in 1.5-2 (the
    centre magnified, the rim squeezed); black beyond the input."""
    import numpy as np
    from scipy import ndimage

    p = float(rng.uniform(1.5, 2.0))
    c = (SIZE - 1) / 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    dy, dx = (yy - c) / c, (xx - c) / c
    r = np.hypot(dy, dx)
    scale = np.where(r > 0, r ** (p - 1), 0.0)  # r ** p / r
    coords = (c + dy * scale * c, c + dx * scale * c)
    g = ndimage.map_coordinates(x[..., 0].astype(np.float64), coords, order=1, cval=0.0)
    return np.repeat(g.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _posterize_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: 8, 3 or 2 bits kept per channel (PIL's ImageOps.posterize)."""
    from PIL import ImageOps

    return ImageOps.posterize(img, (8, 3, 2)[k])


def _left_of_label(img: Any, k: int, rng: Any) -> Any:
    """A circle and a square (radius 5-10 px each, random colours, not overlapping), the
    circle's centre left of the square's (class 0) or right of it (class 1), at least
    6 px apart sideways, at random heights."""
    from PIL import ImageDraw

    while True:
        rc, rs = (int(v) for v in rng.integers(5, 11, size=2))
        xc = int(rng.integers(rc + 1, SIZE - rc - 1))
        xs = int(rng.integers(rs + 1, SIZE - rs - 1))
        yc = int(rng.integers(rc + 1, SIZE - rc - 1))
        ys = int(rng.integers(rs + 1, SIZE - rs - 1))
        apart = abs(xc - xs) >= rc + rs + 2 or abs(yc - ys) >= rc + rs + 2
        if apart and abs(xc - xs) >= 6 and (xc < xs) == (k == 0):
            break
    d = ImageDraw.Draw(img)
    d.ellipse((xc - rc, yc - rc, xc + rc, yc + rc),
              fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    d.rectangle((xs - rs, ys - rs, xs + rs, ys + rs),
                fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return img


def _fringes_label(img: Any, k: int, rng: Any) -> Any:
    """Class 0: as is; class 1: red moved left and blue moved right, 3-5 px apart in all,
    the columns they uncover repeating the edge column (no wrapped seam)."""
    import numpy as np
    from PIL import Image

    if k == 0:
        return img
    gap = int(rng.integers(3, 6))
    left, right = gap // 2, gap - gap // 2
    a = np.asarray(img).copy()
    red = np.pad(a[..., 0], ((0, 0), (0, left)), mode="edge")
    blue = np.pad(a[..., 2], ((0, 0), (right, 0)), mode="edge")
    a[..., 0], a[..., 2] = red[:, left:], blue[:, :SIZE]
    return Image.fromarray(a)


TASKS.update({
    "glyphs-hollow": _glyph_task(_hollow),
    "digits0-4-fisheye": _digit_task(_fisheye, (0, 1, 2, 3, 4)),
    "digits-mod3": _digit_groups(MOD3, 197, ("mod0", "mod1", "mod2")),
    "photo-posterize": _photo_task(_posterize_label, 3, ("bits8", "bits3", "bits2"),
                                   salt=199),
    "photo-left-of": _photo_task(_left_of_label, 2, ("circle-left", "circle-right"),
                                 salt=211),
    "photo-fringes": _photo_task(_fringes_label, 2, ("as-is", "fringed"), salt=223),
})
