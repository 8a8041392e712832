"""Stop 21's fresh parts for ``bench_auto.py`` (fresh2, fresh3, fresh4), registered in
:data:`bench_auto_tasks.TASKS` on import. Each part was written before it first ran; the
docstrings say what each task measures. Drawn, like the rest, from data inside installed
packages (scikit-learn's photos and digits, the zoonet glyphs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench_auto_tasks import (
    SHAPES,
    SIZE,
    TASKS,
    Generated,
    _crop,
    _digit_task,
    _draw_shape,
    _inverted,
    _noisy,
    _photo_task,
    _photos,
)

__all__ = ["TASKS"]


# -- the second fresh part (stop 21): written and run before any rule change of that stop --

def _small(x: Any, rng: Any) -> Any:
    """The digit shrunk to 24 px at a random place on a black 64 px canvas (scale and
    position)."""
    import numpy as np
    from PIL import Image

    side = 24
    small = Image.fromarray(x).resize((side, side), Image.BILINEAR)
    canvas = Image.new("RGB", (SIZE, SIZE))
    cx, cy = (int(v) for v in rng.integers(0, SIZE - side, size=2))
    canvas.paste(small, (cx, cy))
    return np.asarray(canvas)


def _occluded(x: Any, rng: Any) -> Any:
    """A black bar over a random third of the digit, horizontal or vertical (missing
    strokes)."""
    x = x.copy()
    w = SIZE // 3
    at = int(rng.integers(0, SIZE - w))
    if rng.random() < 0.5:
        x[at:at + w] = 0
    else:
        x[:, at:at + w] = 0
    return x


def _digits_on_photo(per_class: int, val_per_class: int, seed: int) -> Generated:
    """Digits 0-4, their strokes in a random bright colour over a 64 px photo crop
    (clutter behind a glyph)."""
    import numpy as np

    make = _digit_task(lambda x, rng: x, (0, 1, 2, 3, 4))
    x_tr, y_tr, x_va, y_va, classes = make(per_class, val_per_class, seed)
    photos = _photos()
    out = []
    for stream, xs in ((0, x_tr), (1, x_va)):
        rng = np.random.default_rng([seed, 59, stream])
        mixed = []
        for x in xs:
            ground = np.asarray(_crop(rng, photos), np.float32) * 0.6
            a = x[..., :1].astype(np.float32) / 255.0
            ink = rng.integers(160, 256, size=3).astype(np.float32)
            mixed.append((a * ink + (1 - a) * ground).clip(0, 255).astype(np.uint8))
        out.append(np.stack(mixed))
    return out[0], y_tr, out[1], y_va, classes


def _blur_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: the crop left sharp, or blurred with radius 1 or 2.5 (how sharp, not
    what)."""
    from PIL import ImageFilter

    radius = (0.0, 1.0, 2.5)[k]
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius else img


def _stripes_label(img: Any, k: int, rng: Any) -> Any:
    """Faint stripes at 0/45/90/135 degrees (period 6-10 px, random phase) blended over the
    crop (an orientation under clutter)."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    theta = np.pi * k / 4
    period = float(rng.uniform(6, 10))
    wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period
                  + float(rng.uniform(0, 2 * np.pi)))
    base = np.asarray(img, np.float32)
    return Image.fromarray((base + 40.0 * wave[..., None]).clip(0, 255).astype(np.uint8))


def _swap_label(img: Any, k: int, rng: Any) -> Any:
    """Class 0: the crop as is; 1: its top and bottom halves swapped; 2: its left and right
    halves swapped (a seam, not an object)."""
    import numpy as np
    from PIL import Image

    x = np.asarray(img)
    h = SIZE // 2
    if k == 1:
        x = np.concatenate([x[h:], x[:h]], axis=0)
    elif k == 2:
        x = np.concatenate([x[:, h:], x[:, :h]], axis=1)
    return Image.fromarray(np.ascontiguousarray(x))


TASKS.update({
    "digits0-4-small": _digit_task(_small, (0, 1, 2, 3, 4)),
    "digits0-4-occluded": _digit_task(_occluded, (0, 1, 2, 3, 4)),
    "digits-on-photo": _digits_on_photo,
    "photo-sharpness": _photo_task(_blur_label, 3, ("sharp", "blur1", "blur2.5"), salt=61),
    "photo-stripes": _photo_task(_stripes_label, 4, ("d0", "d45", "d90", "d135")),
    "photo-swap": _photo_task(_swap_label, 3, ("as-is", "top-bottom", "left-right")),
})


# -- the third fresh part (stop 21): written, with the rules it tests, before it first ran --

def _bold(x: Any, rng: Any) -> Any:
    """Strokes thickened by a 5 px maximum filter (stroke width)."""
    import numpy as np
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(x).filter(ImageFilter.MaxFilter(5)))


def _mirrored(x: Any, rng: Any) -> Any:
    """Mirrored left to right (a geometry the pretraining glyphs never show)."""
    import numpy as np

    return np.ascontiguousarray(x[:, ::-1])


def _noise_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: Gaussian pixel noise of sigma 0, 12 or 30 over the crop (how noisy, not
    what)."""
    import numpy as np

    sigma = (0.0, 12.0, 30.0)[k]
    x = np.asarray(img, np.float32)
    x = x + rng.normal(0, sigma, size=x.shape) if sigma else x
    return x.clip(0, 255).astype(np.uint8)


def _disk_size_label(img: Any, k: int, rng: Any) -> Any:
    """A disk of radius 4-6, 9-11 or 14-16 px in a random colour and place (how big)."""
    from PIL import ImageDraw

    r = int(rng.integers(4, 7)) + 5 * k
    cx, cy = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return img


def _same_label(img: Any, k: int, rng: Any) -> Any:
    """Two shapes in the left and right halves: class 0 the same shape, class 1 two
    different ones (a relation, not an object)."""
    from PIL import Image

    first = int(rng.integers(len(SHAPES)))
    second = first if k == 0 else (first + int(rng.integers(1, len(SHAPES)))) % len(SHAPES)
    out = img.copy()
    for i, shape in enumerate((SHAPES[first], SHAPES[second])):
        half = Image.new("RGB", (SIZE, SIZE))
        half.paste(img.crop((32 * i, 0, 32 * i + 32, SIZE)).resize((SIZE, SIZE)))
        half = _draw_shape(half, shape, rng).resize((32, SIZE))
        out.paste(half, (32 * i, 0))
    return out


def _cast_label(img: Any, k: int, rng: Any) -> Any:
    """Class k: channel k raised by 25-45 levels (a colour cast; no shape at all)."""
    import numpy as np
    from PIL import Image

    x = np.asarray(img, np.float32).copy()
    x[..., k] += float(rng.uniform(25, 45))
    return Image.fromarray(x.clip(0, 255).astype(np.uint8))


TASKS.update({
    "digits5-9-bold": _digit_task(_bold),
    "digits5-9-mirrored": _digit_task(_mirrored),
    "photo-noise-level": _photo_task(_noise_label, 3, ("clean", "sigma12", "sigma30"),
                                     salt=67),
    "photo-disk-size": _photo_task(_disk_size_label, 3, ("small", "medium", "large")),
    "photo-same-different": _photo_task(_same_label, 2, ("same", "different")),
    "photo-colour-cast": _photo_task(_cast_label, 3, ("red", "green", "blue")),
})


# -- the fourth fresh part (stop 21): glyph tasks for the stage-0 hypothesis, written with
# the rule it tests before it first ran --------------------------------------------------

def _glyph_task(transform: Callable[[Any, Any], Any],
                n_classes: int = 5) -> Callable[[int, int, int], Generated]:
    """``n_classes`` pretraining glyph classes drawn by the seed, each image passed through
    ``transform(rgb uint8, rng)`` (an input-level shift of classes the features know)."""

    def make(per_class: int, val_per_class: int, seed: int) -> Generated:
        import numpy as np

        from zoo_core_plugins.zoonet import glyphs

        pool = list(glyphs.PRETRAIN_CLASSES)
        chosen = [pool[i] for i in np.random.default_rng([seed, 71]).choice(
            len(pool), n_classes, replace=False)]
        out = []
        for stream, n in ((0, per_class), (1, val_per_class)):
            rng = np.random.default_rng([seed, 73, stream])
            xs, ys = [], []
            for k, c in enumerate(chosen):
                x, _ = glyphs.render_set([c], n, seed=seed, stream=stream, size=SIZE)
                xs += [transform(np.repeat(img[..., None], 3, axis=-1), rng) for img in x]
                ys += [k] * len(x)
            out += [np.stack(xs), np.asarray(ys)]
        return out[0], out[1], out[2], out[3], tuple(f"g{k}" for k in range(n_classes))

    return make


def _on_photo(x: Any, rng: Any) -> Any:
    """The strokes in a random bright colour over a darkened 64 px photo crop."""
    import numpy as np

    ground = np.asarray(_crop(rng, _photos()), np.float32) * 0.6
    a = x[..., :1].astype(np.float32) / 255.0
    ink = rng.integers(160, 256, size=3).astype(np.float32)
    return (a * ink + (1 - a) * ground).clip(0, 255).astype(np.uint8)


def _glyph_unions(sizes: tuple[int, ...], salt: int,
                  names: tuple[str, ...]) -> Callable[[int, int, int], Generated]:
    """Class k: the union of ``sizes[k]`` pretraining glyph classes drawn by the seed (an
    output-level shift), its images shared out evenly over them."""

    def make(per_class: int, val_per_class: int, seed: int) -> Generated:
        import numpy as np

        from zoo_core_plugins.zoonet import glyphs

        pool = list(glyphs.PRETRAIN_CLASSES)
        picked = np.random.default_rng([seed, salt]).choice(len(pool), sum(sizes),
                                                            replace=False)
        chosen = [pool[i] for i in picked]
        starts = np.cumsum((0, *sizes))
        out = []
        for stream, n in ((0, per_class), (1, val_per_class)):
            xs, ys = [], []
            for k, size in enumerate(sizes):
                for j, c in enumerate(chosen[starts[k]:starts[k] + size]):
                    m = n // size + (1 if j < n % size else 0)
                    if m:
                        x, _ = glyphs.render_set([c], m, seed=seed, stream=stream,
                                                 size=SIZE)
                        xs.append(np.repeat(x[..., None], 3, axis=-1))
                        ys += [k] * m
            out += [np.concatenate(xs), np.asarray(ys)]
        return out[0], out[1], out[2], out[3], names

    return make


# 4 classes of 2 glyph classes each (pairs instead of glyph-groups' fours)
_glyph_pairs = _glyph_unions((2, 2, 2, 2), 79, tuple(f"pair{k}" for k in range(4)))


TASKS.update({
    "glyphs-inverted": _glyph_task(_inverted),
    "glyphs-noisy": _glyph_task(_noisy),
    "glyphs-on-photo": _glyph_task(_on_photo),
    "glyphs-small": _glyph_task(_small),
    "glyph-pairs": _glyph_pairs,
})
