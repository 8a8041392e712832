"""Stop 25's fresh part for ``bench_auto.py`` (fresh13), registered in
:data:`bench_auto_tasks.TASKS` on import (with the earlier parts, which it imports).

fresh13 was written blind to any result, with no rule changed by the commit that added
it. Six families not in any earlier part, drawn, like the rest, from data inside
installed packages:

- ``glyphs-swirled``: five pretraining glyph classes under a swirl about the centre, each
  pixel turned by an angle of 70-110 degrees at the centre falling off smoothly to none
  at the rim (input-level: a twist, neither a rotation nor a radial warp), 10 per class;
- ``digits5-9-elastic``: digits 5-9 under an elastic distortion, a random displacement
  field smoothed by a Gaussian of 5 px and scaled to move pixels by up to 4-6 px
  (input-level: a random, local, smooth warp), 10 per class;
- ``digits-primes``: 2 classes, the prime digits (2, 3, 5, 7) against the rest (0, 1, 4,
  6, 8, 9) (output-level: known digit classes in a grouping with no visual rule), 10 per
  class;
- ``photo-vignette``: a crop as is, with its corners darkened, or with them washed out
  towards white (a radial falloff of 55-75% at the corners: where the frame fades, and
  to what), 40 per class;
- ``photo-largest-colour``: three disks on a crop, one red, one green and one blue, one
  of them clearly the largest; the class is the largest disk's colour (a comparison of
  sizes read out as a colour), 50 per class;
- ``photo-crossing``: two straight lines of random colours on a crop that cross each
  other or stay at least 5 px apart (a topological relation between two marks), 100 per
  class (plenty).
"""

from __future__ import annotations

from typing import Any

from bench_auto_tasks import SIZE, _digit_task, _photo_task
from bench_auto_tasks_stop21 import _glyph_task
from bench_auto_tasks_stop24 import _digit_groups
from bench_auto_tasks_stop24c import TASKS

__all__ = ["TASKS"]

PRIMES = ((2, 3, 5, 7), (0, 1, 4, 6, 8, 9))


def _grey_warp(x: Any, coords: tuple[Any, Any]) -> Any:
    """The first channel of ``x`` sampled at ``coords`` (bilinear, black beyond the
    canvas), as an RGB uint8 image."""
    import numpy as np
    from scipy import ndimage

    g = ndimage.map_coordinates(x[..., 0].astype(np.float64), coords, order=1, cval=0.0)
    return np.repeat(g.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _swirled(x: Any, rng: Any) -> Any:
    """A swirl about the centre: the output pixel at radius r samples the input turned by
    theta * (1 - r / R) ** 2 (R the half-diagonal), theta 70-110 degrees, the sense
    random."""
    import numpy as np

    theta = np.deg2rad(float(rng.uniform(70, 110))) * (1 if rng.random() < 0.5 else -1)
    c = (SIZE - 1) / 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    dy, dx = yy - c, xx - c
    r = np.hypot(dy, dx)
    a = theta * (1 - r / (c * np.sqrt(2))) ** 2
    cos, sin = np.cos(a), np.sin(a)
    return _grey_warp(x, (c + dy * cos + dx * sin, c - dy * sin + dx * cos))


def _elastic(x: Any, rng: Any) -> Any:
    """An elastic distortion: each pixel samples the input at its place plus a
    displacement field (uniform noise smoothed by a Gaussian of sigma 5 px), scaled so
    that the largest displacement is 4-6 px."""
    import numpy as np
    from scipy import ndimage

    field = [ndimage.gaussian_filter(rng.uniform(-1, 1, size=(SIZE, SIZE)), 5.0)
             for _ in range(2)]
    peak = max(float(np.abs(f).max()) for f in field) or 1.0
    scale = float(rng.uniform(4, 6)) / peak
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    return _grey_warp(x, (yy + scale * field[0], xx + scale * field[1]))


def _vignette_label(img: Any, k: int, rng: Any) -> Any:
    """Class 0: as is; 1: darkened towards the corners; 2: washed out towards white at the
    corners. The blend weight is s * (r / R) ** 2 (R the half-diagonal), s 0.55-0.75."""
    import numpy as np
    from PIL import Image

    if k == 0:
        return img
    s = float(rng.uniform(0.55, 0.75))
    c = (SIZE - 1) / 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    w = (s * (np.hypot(yy - c, xx - c) / (c * np.sqrt(2))) ** 2)[..., None]
    a = np.asarray(img, np.float32)
    target = 0.0 if k == 1 else 255.0
    return Image.fromarray((a * (1 - w) + target * w).round().clip(0, 255).astype(np.uint8))


def _largest_colour_label(img: Any, k: int, rng: Any) -> Any:
    """Three disks, one red, one green, one blue (each channel 200-255 over 0-60 for the
    others), not overlapping; the one of colour k has a radius of 9-12 px, the other two
    3-6 px."""
    from PIL import ImageDraw

    radii = [int(rng.integers(9, 13)) if j == k else int(rng.integers(3, 7)) for j in range(3)]
    while True:
        centres = [tuple(int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
                   for r in radii]
        if all((centres[i][0] - centres[j][0]) ** 2 + (centres[i][1] - centres[j][1]) ** 2
               >= (radii[i] + radii[j] + 2) ** 2 for i in range(3) for j in range(i)):
            break
    d = ImageDraw.Draw(img)
    for j, ((cx, cy), r) in enumerate(zip(centres, radii, strict=True)):
        colour = [int(v) for v in rng.integers(0, 61, size=3)]
        colour[j] = int(rng.integers(200, 256))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(colour))
    return img


def _segment_gap(p: Any, q: Any) -> tuple[bool, float]:
    """Whether segments p and q (each ((x0, y0), (x1, y1))) cross well inside both
    (0.2 < t < 0.8 along each), and the least distance between them."""
    import numpy as np

    a, b = np.asarray(p[0], float), np.asarray(p[1], float)
    c, d = np.asarray(q[0], float), np.asarray(q[1], float)
    r, s = b - a, d - c
    den = r[0] * s[1] - r[1] * s[0]
    crosses = False
    if abs(den) > 1e-9:
        t = ((c - a)[0] * s[1] - (c - a)[1] * s[0]) / den
        u = ((c - a)[0] * r[1] - (c - a)[1] * r[0]) / den
        crosses = 0.2 < t < 0.8 and 0.2 < u < 0.8

    def to_segment(pt: Any, e0: Any, e1: Any) -> float:
        v = e1 - e0
        h = float(np.clip(np.dot(pt - e0, v) / np.dot(v, v), 0, 1))
        return float(np.hypot(*(pt - e0 - h * v)))

    gap = min(to_segment(a, c, d), to_segment(b, c, d), to_segment(c, a, b),
              to_segment(d, a, b))
    return crosses, gap


def _crossing_label(img: Any, k: int, rng: Any) -> Any:
    """Two 2 px lines, 24-50 px long, of random colours: class 0, they cross well inside
    both (neither end near the other line); class 1, they stay at least 5 px apart."""
    import numpy as np
    from PIL import ImageDraw

    def segment() -> tuple:
        while True:
            length = float(rng.uniform(24, 50))
            angle = float(rng.uniform(0, np.pi))
            x0, y0 = (float(v) for v in rng.uniform(3, SIZE - 4, size=2))
            x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
            if 3 <= x1 <= SIZE - 4 and 3 <= y1 <= SIZE - 4:
                return (x0, y0), (x1, y1)

    while True:
        p, q = segment(), segment()
        crosses, gap = _segment_gap(p, q)
        if (k == 0 and crosses) or (k == 1 and not crosses and gap >= 5):
            break
    d = ImageDraw.Draw(img)
    for seg in (p, q):
        d.line([tuple(round(v) for v in pt) for pt in seg], width=2,
               fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return img


TASKS.update({
    "glyphs-swirled": _glyph_task(_swirled),
    "digits5-9-elastic": _digit_task(_elastic),
    "digits-primes": _digit_groups(PRIMES, 227, ("prime", "other")),
    "photo-vignette": _photo_task(_vignette_label, 3, ("none", "dark", "washed"), salt=229),
    "photo-largest-colour": _photo_task(_largest_colour_label, 3, ("red", "green", "blue"),
                                        salt=233),
    "photo-crossing": _photo_task(_crossing_label, 2, ("cross", "apart"), salt=239),
})
