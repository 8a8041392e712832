"""Stop 23's fresh part for ``bench_auto.py`` (fresh9), registered in
:data:`bench_auto_tasks.TASKS` on import (with the earlier parts, which it imports).

fresh9 was written while ``bench_auto_more.py`` trained ``lp_ft`` on the ten parts already
seen, before any of its results were read, and with no rule changed: whatever candidate
those results suggest is committed with its criterion before this part first runs, and
this part decides it. Six families not in any earlier part, drawn, like the rest, from
data inside installed packages:

- ``glyphs-embossed``: five pretraining glyph classes through an emboss filter (input-level:
  strokes become relief edges on mid-grey), 10 per class;
- ``digits0-4-checker``: digits 0-4 over an 8 px checkerboard of a random phase
  (input-level: a regular clutter behind the strokes), 10 per class;
- ``glyph-uneven``: 3 classes, the unions of one, two and three pretraining glyph classes
  (output-level), 10 per class;
- ``photo-motion``: a photo crop unblurred, or blurred along rows, or along columns
  (9 px): the direction of a motion blur, 40 per class;
- ``photo-contrast``: a crop at 0.35x, 1x or 2.2x contrast, 50 per class;
- ``photo-arrows``: an arrow pointing up, down, left or right on a crop, 100 per class
  (plenty).
"""

from __future__ import annotations

from typing import Any

from bench_auto_tasks import SIZE, _digit_task, _photo_task
from bench_auto_tasks_stop21 import _glyph_task, _glyph_unions
from bench_auto_tasks_stop22b import TASKS

__all__ = ["TASKS"]


def _embossed(x: Any, rng: Any) -> Any:
    """PIL's emboss filter: strokes as relief on mid-grey."""
    import numpy as np
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(x).filter(ImageFilter.EMBOSS))


def _checker(x: Any, rng: Any) -> Any:
    """The strokes over an 8 px checkerboard (grey levels 0 and 110) of a random phase."""
    import numpy as np

    dy, dx = (int(v) for v in rng.integers(0, 16, size=2))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    board = np.where(((yy + dy) // 8 + (xx + dx) // 8) % 2 == 0, 0, 110).astype(np.uint8)
    return np.maximum(x, board[..., None])


def _motion_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: no blur, a 9 px box blur along rows, or along columns."""
    import numpy as np
    from PIL import Image
    from scipy.ndimage import uniform_filter1d

    if k == 0:
        return img
    # rows run along axis 1 (a horizontal blur), columns along axis 0
    x = uniform_filter1d(np.asarray(img, np.float32), size=9, axis=(1, 0)[k - 1],
                         mode="reflect")
    return Image.fromarray(x.clip(0, 255).astype(np.uint8))


def _contrast_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: contrast scaled by 0.35, 1 or 2.2 (PIL's ImageEnhance)."""
    from PIL import ImageEnhance

    return ImageEnhance.Contrast(img).enhance((0.35, 1.0, 2.2)[k])


def _arrow_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: an arrow pointing up, down, left or right, 3 px shaft, in a random colour."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    r = int(rng.integers(10, 20))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    ux, uy = ((0, -1), (0, 1), (-1, 0), (1, 0))[k]  # where the head points
    tip = (cx + ux * r, cy + uy * r)
    d.line((cx - ux * r, cy - uy * r, *tip), fill=colour, width=3)
    h = max(4, r // 2)  # the head: a triangle at the tip, its base across the shaft
    bx, by = tip[0] - ux * h, tip[1] - uy * h
    d.polygon([tip, (bx - uy * h, by - ux * h), (bx + uy * h, by + ux * h)], fill=colour)
    return img


TASKS.update({
    "glyphs-embossed": _glyph_task(_embossed),
    "digits0-4-checker": _digit_task(_checker, digits_used=(0, 1, 2, 3, 4)),
    "glyph-uneven": _glyph_unions((1, 2, 3), 137, ("one", "two", "three")),
    "photo-motion": _photo_task(_motion_label, 3, ("sharp", "rows", "columns"), salt=139),
    "photo-contrast": _photo_task(_contrast_label, 3, ("low", "normal", "high"), salt=149),
    "photo-arrows": _photo_task(_arrow_label, 4, ("up", "down", "left", "right"), salt=151),
})
