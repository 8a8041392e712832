"""Stop 22's last fresh part for ``bench_auto.py`` (fresh8), registered in
:data:`bench_auto_tasks.TASKS` on import (with the earlier parts, which it imports).

fresh8 was written after fresh7 had run, with no rule changed and no candidate to adopt in
this stop: it adds unseen task-seeds to the estimate of how auto (rule A) compares with
every fixed strategy, and tests stop 21's candidate B once more under a criterion
committed with it (the commit that added this file). Drawn, like the rest, from data
inside installed packages:

- ``glyphs-rotated``: five pretraining glyph classes turned by 90 degrees +- 15
  (input-level: geometry), 10 per class;
- ``digits5-9-gamma``: digits with a gamma of 0.35 on their grey levels (input-level:
  thick soft strokes), 10 per class;
- ``glyph-one-vs-six``: 2 classes, one pretraining glyph class against the union of six
  others (output-level), 10 per class;
- ``photo-hue``: a photo crop with its channels rolled by 0, 1 or 2 (a colour rotation,
  not an object), 40 per class;
- ``photo-blocky``: a crop pixelated in blocks of 1, 4 or 8 px, 60 per class;
- ``photo-outlines``: a shape outlined (circle, square, triangle, cross; not filled) on a
  crop, 100 per class (plenty).
"""

from __future__ import annotations

from typing import Any

from bench_auto_tasks import SIZE, _digit_task, _photo_task
from bench_auto_tasks_stop21 import _glyph_task, _glyph_unions
from bench_auto_tasks_stop22 import TASKS

__all__ = ["TASKS"]


def _turned(x: Any, rng: Any) -> Any:
    """Turned by 90 degrees +- 15."""
    import numpy as np
    from PIL import Image

    angle = 90 + float(rng.uniform(-15, 15))
    return np.asarray(Image.fromarray(x).rotate(angle, resample=Image.BILINEAR))


def _gamma(x: Any, rng: Any) -> Any:
    """Grey levels raised to the power 0.35."""
    import numpy as np

    return (255.0 * (x.astype(np.float32) / 255.0) ** 0.35).clip(0, 255).astype(np.uint8)


def _hue_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: the RGB channels rolled by k."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(np.roll(np.asarray(img), k, axis=-1)))


def _blocky_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: pixelated in blocks of 1, 4 or 8 px."""
    from PIL import Image

    block = (1, 4, 8)[k]
    if block == 1:
        return img
    return img.resize((SIZE // block, SIZE // block), Image.BILINEAR).resize(
        (SIZE, SIZE), Image.NEAREST)


def _outline_label(img: Any, k: int, rng: Any) -> Any:
    """Shape k outlined, 3 px wide, in a random colour, radius 9-19 px."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    r = int(rng.integers(9, 20))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    box = (cx - r, cy - r, cx + r, cy + r)
    if k == 0:
        d.ellipse(box, outline=colour, width=3)
    elif k == 1:
        d.rectangle(box, outline=colour, width=3)
    elif k == 2:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], outline=colour,
                  width=3)
    else:
        d.line((cx - r, cy, cx + r, cy), fill=colour, width=3)
        d.line((cx, cy - r, cx, cy + r), fill=colour, width=3)
    return img


TASKS.update({
    "glyphs-rotated": _glyph_task(_turned),
    "digits5-9-gamma": _digit_task(_gamma),
    "glyph-one-vs-six": _glyph_unions((1, 6), 109, ("one", "six")),
    "photo-hue": _photo_task(_hue_label, 3, ("rgb", "brg", "gbr"), salt=113),
    "photo-blocky": _photo_task(_blocky_label, 3, ("px1", "px4", "px8"), salt=127),
    "photo-outlines": _photo_task(_outline_label, 4, ("circle", "square", "triangle",
                                                      "cross"), salt=131),
})
