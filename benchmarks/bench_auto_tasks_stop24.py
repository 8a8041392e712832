"""Stop 24's fresh part for ``bench_auto.py`` (fresh10), registered in
:data:`bench_auto_tasks.TASKS` on import (with the earlier parts, which it imports).

fresh10 was written blind to any result of stop 24, with no rule changed. Six families not
in any earlier part, drawn, like the rest, from data inside installed packages:

- ``glyphs-wavy``: five pretraining glyph classes with every row shifted sideways along a
  sine wave (amplitude 2.5-4 px, period 16-28 px; input-level: a non-rigid warp), 10 per
  class;
- ``digits5-9-ghosted``: digits 5-9 with a copy of themselves at 40-60% intensity shifted
  8-14 px, as in a double exposure (input-level: a same-class distractor), 10 per class;
- ``digits-loops``: 2 classes, digits with a closed loop (0, 6, 8, 9) against those
  without (1, 2, 3, 5, 7; 4 left out, written both ways) (output-level: known digit
  classes grouped by a shape property), 10 per class;
- ``photo-light``: a crop under a brightness ramp (0.45x to 1.35x) rising towards the top,
  bottom, left or right (the direction of the light), 40 per class;
- ``photo-symmetry``: a crop as is, its left half mirrored onto its right, or its top half
  mirrored onto its bottom (a symmetry, not an object), 50 per class;
- ``photo-inside``: a ring outline on a crop and a dot inside or outside it (a
  containment relation), 100 per class (plenty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench_auto_tasks import SIZE, Generated, _digit_task, _photo_task
from bench_auto_tasks_stop21 import _glyph_task
from bench_auto_tasks_stop23 import TASKS

__all__ = ["TASKS"]

LOOPS = ((0, 6, 8, 9), (1, 2, 3, 5, 7))


def _wavy(x: Any, rng: Any) -> Any:
    """Row y shifted sideways by round(a sin(2 pi y / period + phase)), a in 2.5-4 px,
    period 16-28 px, black where the shift uncovers the canvas."""
    import numpy as np

    a = float(rng.uniform(2.5, 4))
    period = float(rng.uniform(16, 28))
    phase = float(rng.uniform(0, 2 * np.pi))
    out = np.zeros_like(x)
    for y in range(x.shape[0]):
        s = int(round(a * np.sin(2 * np.pi * y / period + phase)))
        if s >= 0:
            out[y, s:] = x[y, :x.shape[1] - s]
        else:
            out[y, :s] = x[y, -s:]
    return out


def _ghosted(x: Any, rng: Any) -> Any:
    """The maximum of the digit and a copy at 40-60% intensity shifted 8-14 px in a
    random direction (black where the shift uncovers the canvas)."""
    import numpy as np

    dist = float(rng.uniform(8, 14))
    angle = float(rng.uniform(0, 2 * np.pi))
    dy, dx = int(round(dist * np.sin(angle))), int(round(dist * np.cos(angle)))
    ghost = np.zeros_like(x)
    h, w = x.shape[:2]
    ghost[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    faded = (ghost.astype(np.float32) * float(rng.uniform(0.4, 0.6))).astype(np.uint8)
    return np.maximum(x, faded)


def _digit_groups(groups: tuple[tuple[int, ...], ...], salt: int,
                  names: tuple[str, ...]) -> Callable[[int, int, int], Generated]:
    """A task whose class k is the union of the digits in ``groups[k]``, each class's
    images shared out evenly over its digits (an output-level regrouping of known
    classes); seeded by ``[seed, salt]``."""

    def make(per_class: int, val_per_class: int, seed: int) -> Generated:
        import numpy as np

        from zoo_core_plugins.zoonet import digits

        images, labels = digits.load_digits_arrays()
        rng = np.random.default_rng([seed, salt])
        x_tr, y_tr, x_va, y_va = [], [], [], []
        for k, group in enumerate(groups):
            for j, c in enumerate(group):
                n_va = val_per_class // len(group) + (1 if j < val_per_class % len(group)
                                                      else 0)
                n_tr = per_class // len(group) + (1 if j < per_class % len(group) else 0)
                pos = rng.permutation(np.flatnonzero(labels == c))
                val, train = pos[:n_va], pos[n_va:n_va + n_tr]
                if len(val):
                    x_va.append(digits.to_rgb_array(images[val], SIZE))
                if len(train):
                    x_tr.append(digits.to_rgb_array(images[train], SIZE))
                y_va += [k] * len(val)
                y_tr += [k] * len(train)
        return (np.concatenate(x_tr), np.asarray(y_tr), np.concatenate(x_va),
                np.asarray(y_va), names)

    return make


def _light_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: pixels times a linear ramp from 0.45 to 1.35, brightest at the top, bottom,
    left or right edge."""
    import numpy as np
    from PIL import Image

    t = np.linspace(0.0, 1.0, SIZE, dtype=np.float32)
    ramp = (t[::-1], t, t[::-1], t)[k]  # brightness rises towards that edge
    ramp = 0.45 + 0.9 * ramp
    gain = ramp[:, None] if k < 2 else ramp[None, :]
    x = np.asarray(img, np.float32) * gain[..., None]
    return Image.fromarray(x.clip(0, 255).astype(np.uint8))


def _symmetry_label(img: Any, k: int, rng: Any) -> Any:
    """Class 0: the crop as is; 1: its left half mirrored onto its right (symmetric about
    the vertical axis); 2: its top half mirrored onto its bottom."""
    import numpy as np
    from PIL import Image

    x = np.asarray(img).copy()
    h = SIZE // 2
    if k == 1:
        x[:, h:] = x[:, :h][:, ::-1]
    elif k == 2:
        x[h:] = x[:h][::-1]
    return Image.fromarray(x)


def _inside_label(img: Any, k: int, rng: Any) -> Any:
    """A ring (3 px outline, radius 12-17 px) and a dot (radius 3 px), each in a random
    colour: class 0 the dot within 6 px of the ring's centre, class 1 at least 7 px outside
    the ring."""
    import numpy as np
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    r = int(rng.integers(12, 18))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    d.ellipse((cx - r, cy - r, cx + r, cy + r),
              outline=tuple(int(v) for v in rng.integers(0, 256, size=3)), width=3)
    while True:  # a place for the dot on the right side of the ring
        if k == 0:
            dist, angle = float(rng.uniform(0, 6)), float(rng.uniform(0, 2 * np.pi))
            px, py = int(round(cx + dist * np.cos(angle))), int(round(cy + dist * np.sin(angle)))
        else:
            px, py = (int(v) for v in rng.integers(4, SIZE - 4, size=2))
        dist = float(np.hypot(px - cx, py - cy))
        if (dist <= 6) if k == 0 else (dist >= r + 7):
            break
    d.ellipse((px - 3, py - 3, px + 3, py + 3),
              fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return img


TASKS.update({
    "glyphs-wavy": _glyph_task(_wavy),
    "digits5-9-ghosted": _digit_task(_ghosted),
    "digits-loops": _digit_groups(LOOPS, 157, ("loop", "open")),
    "photo-light": _photo_task(_light_label, 4, ("top", "bottom", "left", "right"),
                               salt=163),
    "photo-symmetry": _photo_task(_symmetry_label, 3, ("as-is", "left-right", "top-bottom"),
                                  salt=167),
    "photo-inside": _photo_task(_inside_label, 2, ("inside", "outside"), salt=173),
})
