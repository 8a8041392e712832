"""Glyph classes rendered from the fonts that ship inside matplotlib (zoonet's pretraining data).

Each class is one Unicode character; its images are that character drawn by Pillow
(``ImageFont.truetype``, basic layout, so no system shaping library is involved) from the
TrueType files in ``matplotlib/mpl-data/fonts/ttf``, with seeded augmentation. Nothing is
downloaded: matplotlib is a dependency of zoo_core, and its fonts are read where it is
installed (matplotlib itself is not imported).

**Fonts** (:data:`FONTS`): DejaVu Sans, Sans Mono and Serif and STIX General, each in
regular, bold, italic/oblique and bold italic (Unicode cmaps: Latin, Greek, Cyrillic,
IPA, symbols; DejaVu Sans also Armenian, Hebrew, Georgian), plus the Computer Modern
fonts cmr10, cmb10, cmss10, cmti10, cmtt10 and cmmi10 for the ASCII letters only (their
cmaps follow TeX encodings, so other code points would draw other glyphs). A class is
drawn from the fonts of this list that cover it (:func:`fonts_for`, at least 4).

**Classes** (:data:`CLASSES`, 400+): letters of the Latin, Greek, Cyrillic, IPA,
Armenian, Hebrew and Georgian scripts and symbols (punctuation, currency, letter-like,
arrows, mathematical operators, technical and geometric shapes, miscellaneous symbols),
chosen by ``scripts/select_glyph_classes.py`` with these rules:

- no digits: no character with a Unicode numeric value (``0-9``, ``²``, ``½``, ``Ⅳ``...),
  and none that *looks* like a digit: a hand list (:data:`DIGIT_LOOKALIKES`: ``O o I l i
  S s Z z B b g q``, their Greek and Cyrillic twins, ``З з б δ θ``...) plus every character
  whose clean renders correlate with a digit's renders in the same fonts at 0.80 or more;
- no near-duplicates: a character is skipped when its clean renders correlate at 0.85 or
  more with a class kept before it (Cyrillic ``А`` after Latin ``A``, ``c`` after ``C``);
- no accented letters (no canonical decomposition) and no modifier letters.

:data:`HELDOUT_CLASSES` (every 7th class, about 1 in 7) is never used in pretraining;
:data:`PRETRAIN_CLASSES` is the rest. The held-out classes make a target task of "glyphs
not seen in pretraining" (:func:`export_imagefolder`).

**Pixels** follow the embedded digits (:func:`zoo_core_plugins.zoonet.digits.to_pil`):
white strokes on black, grey, drawn at a *native* resolution of 8 to 32 pixels
(:attr:`GlyphStyle.resolution`, box-filtered from 4x oversampling), optionally blurred and
quantised to 17 grey levels like the 8x8 digits, then resized bilinear to ``size`` and
replicated to RGB by :func:`to_rgb_array` / the exported PNGs.

**Determinism**: every image is a pure function of the character and a
:class:`GlyphStyle`; :func:`sample_style` draws styles from a seeded
``numpy.random.Generator``; :func:`render_set` seeds one generator per (seed, stream,
character), so the same arguments give byte-identical arrays, and a class's images do not
depend on which other classes are rendered with it. (Bits depend on the font files and
the FreeType inside Pillow; :func:`fonts_digest` names the former.)

numpy and Pillow only (fontTools, a matplotlib dependency, reads the fonts' cmaps); no
torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from zoo_core import InvalidArgumentError
from zoo_core_plugins.zoonet._imagefolder import check_split_names, export_tree

__all__ = [
    "CLASSES",
    "DIGIT_LOOKALIKES",
    "FONTS",
    "HELDOUT_CLASSES",
    "MARKER",
    "PRETRAIN_CLASSES",
    "GlyphStyle",
    "channel_stats",
    "class_folder",
    "export_imagefolder",
    "font_dir",
    "fonts_digest",
    "fonts_for",
    "render",
    "render_set",
    "sample_style",
    "to_rgb_array",
]

UNICODE_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)  # fmt: skip
# TeX-encoded: used for the ASCII letters only.
ASCII_LETTER_FONTS: tuple[str, ...] = (
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "cmmi10.ttf",
)  # fmt: skip
FONTS: tuple[str, ...] = UNICODE_FONTS + ASCII_LETTER_FONTS
MIN_FONTS = 4

# Digit look-alikes excluded by hand (the correlation rule catches more; see the module doc).
DIGIT_LOOKALIKES = (
    "OoΟοОоΘθѲѳØøʘ⍬∅○◯"  # 0
    "IlİıiΙιІіӀǀ|!¡ɪ"  # 1
    "ZzΖƧƨƻ"  # 2
    "ЗзƷʒӠɜȝȜƐɛεЭэ℈"  # 3
    "Чч"  # 4
    "SsЅѕƼƽՏ"  # 5
    "bбƃƂδ"  # 6
    "BßΒВȢȣ"  # 8
    "gqɡցǥ"  # 9
)

# Chosen by scripts/select_glyph_classes.py (rules in the module doc); order matters:
# HELDOUT_CLASSES is every 7th entry. Do not edit by hand: regenerate and re-pin the weights.
# 636 classes (digit-max 0.8, dup-max 0.85)
CLASS_TEXT = (
    'ACDEGHJKLMNPQRTUVWXYadefhjkmnrtuyΓΞΣΦΨΩα'
    'βζηλμνπρςσυφχωДЖЛЦШЩЪЫЬЮЯифЂЉЊЋЏђÆ×Þæ÷þŁ'
    'ŊŒƀƁƆƇƊƏƑƒƔƕƖƝƢƣƤƦƫƳƵƸƺƾǁǂȡȤȴȵȸȹȻȾȿɀɁɂɆɇ'
    'Ɋɍɐɕɗɚɟɠɥɨɬɮɰɱɲɳɷɹɻɽɾɿʁʆʇʉʊʍʎʐʑʕʛʞʤʦʧʨʩʪ'
    'ʫʬʭʮʯԳԴԵԶԷԸԹԺԻԽԿՀՃՄՆՇՊՌՎՐՒՔՖէթլխձմնչվבדך'
    'למעףצקרשადთკლრსუფქწჭჯ"#$%&()*,-./:;<>@\\^'
    '_`¢£¤¥¦©«¬®±¶»¿₠₢₣₥₦₧₪€₭₯₰₸₹₺₽℄℔℘℞℟℣℥℮Ⅎ℺'
    '⅁⅃⅄⅋↑↓↖↗↘↙↜↝↞↠↢↣↩↪↯↰↱↲↳↴↵↶↷↸↹↺↻↼↽↾↿⇀⇁⇃⇄⇅'
    '⇆⇇⇈⇉⇊⇖⇗⇘⇙⇤⇧⇩⇰⇱⇲⇵⇶∆∈∋∍∏∓∔∖√∛∝∞∟∠∡∢∩∪∮∴∵∷∸'
    '∹∺∿≀≂≃≅≆≋≌≍≎≏≐≒≓≗≘≝≞≟≣≤≥≦≧≪≫≶≷≺≻≼≽≾≿⊂⊃⊆⊇'
    '⊊⊋⊌⊏⊐⊓⊔⊘⊞⊠⊡⊢⊣⊥⊦⊧⊨⊩⊪⊫⊱⊻⊼⊽⊾⊿⋂⋄⋆⋇⋈⋋⋌⋍⋐⋔⋕⋛⋜⋝'
    '⋨⋩⋮⋰⋱⋲⋵⋶⋸⋺⋽⋿⌀⌂⌄⌅⌆⌈⌌⌎⌏⌐⌑⌒⌓⌔⌕⌘⌙⌝⌥⌦⌧⌫⌬⌵⌶⌸⌼⌿'
    '⍀⍁⍂⍅⍉⍏⍓⍘⍚⍛⍜⍠⍢⍨⍩⍪⍽⎁⎇⎉⎋⎔⎝⎞⎠⎤⎨⎬⏎⏏⏥⏨□▫▭▲▶▷▻▼'
    '▽◀◁◅◇◊◌◑◓◜◝◞◟◡◢◤◥◧◨◩◪◫◴◸◹◿☂☃☄☇☈☉☊☋☍☎☑☔☕☖'
    '☘☙☚☛☜☝☞☟☠☡☢☣☥☩☪☭☱☼☽☾♂♃♄♅♇♈♉♊♋♌♍♎♏♐♑♓♔♖♘♡'
    '♤♧♨♩♪♫♬♭♮♲♳♾♿⚁⚅⚇⚍⚐⚑⚒⚓⚔⚖⚗⚟⚡⚢⚣⚤⚥⚦⚧⚩⚲⛀⛁'
)

CLASSES: tuple[str, ...] = tuple(CLASS_TEXT)
HELDOUT_EVERY = 7
HELDOUT_CLASSES: tuple[str, ...] = CLASSES[HELDOUT_EVERY - 1 :: HELDOUT_EVERY]
PRETRAIN_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c not in set(HELDOUT_CLASSES))

RENDER_PX = 64  # font size of the master glyph
OVERSAMPLE = 4  # the glyph is placed at OVERSAMPLE x the native resolution, then box-filtered
MARKER = ".zoo_glyphs.json"
_FORMAT = 1  # bump when the rendered pixels or the export layout change


# ----------------------------------------------------------------------------- fonts


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder (found without importing matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "matplotlib is not installed; its bundled fonts are the glyph source "
            "(pip install matplotlib)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    missing = [f for f in FONTS if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks the fonts {missing}; reinstall matplotlib")
    return path


@cache
def _cmap(font: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # matplotlib's own dependency

    with TTFont(font_dir() / font, lazy=True) as f:
        return frozenset(f.getBestCmap() or ())


def fonts_for(char: str) -> tuple[str, ...]:
    """The fonts of :data:`FONTS` that draw ``char`` (in :data:`FONTS` order).

    >>> fonts_for("A")[:2], len(fonts_for("A"))
    (('DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'), 22)
    """
    _check_char(char)
    cp = ord(char)
    out = [f for f in UNICODE_FONTS if cp in _cmap(f)]
    if char.isascii() and char.isalpha():
        out += ASCII_LETTER_FONTS
    return tuple(out)


def fonts_digest() -> str:
    """sha256 over the names and bytes of :data:`FONTS` (what the rendered bits depend on)."""
    h = hashlib.sha256()
    root = font_dir()
    for f in FONTS:
        h.update(f.encode() + b"\0" + hashlib.sha256((root / f).read_bytes()).digest())
    return h.hexdigest()


@cache
def _font(font: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(
        str(font_dir() / font), RENDER_PX, layout_engine=ImageFont.Layout.BASIC
    )


def _check_char(char: object) -> None:
    if not isinstance(char, str) or len(char) != 1:
        raise InvalidArgumentError(f"a glyph class is one character, got {char!r}")


def class_folder(char: str) -> str:
    """The ImageFolder folder name of a class: ``u`` + its code point in hex (``u03b1``)."""
    _check_char(char)
    return f"u{ord(char):04x}"


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class GlyphStyle:
    """How one image of a glyph is drawn (all fields plain numbers, so it is hashable).

    ``resolution``: native size in pixels before the bilinear resize to the output size;
    ``fill``: the glyph's longer side as a fraction of the box; ``aspect``: width/height
    stretch; ``rotation`` (degrees, counter-clockwise) and ``shear`` (x per unit y);
    ``shift_x``/``shift_y``: offset of the centre as a fraction of the box; ``stroke``:
    extra stroke width in pixels at the 64 px master size; ``blur``: Gaussian radius at
    the native resolution; ``intensity``: stroke brightness (1.0 = 255); ``levels``: grey
    levels to quantise to at the native resolution (0: none; 17 like the 8x8 digits).
    """

    font: str = "DejaVuSans.ttf"
    resolution: int = 32
    fill: float = 0.85
    aspect: float = 1.0
    rotation: float = 0.0
    shear: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    stroke: int = 0
    blur: float = 0.0
    intensity: float = 1.0
    levels: int = 0


@lru_cache(maxsize=8192)
def _ink(char: str, font: str, stroke: int) -> Image.Image | None:
    """The glyph drawn white on black at :data:`RENDER_PX`, cropped to its ink (None: none)."""
    ft = _font(font)
    left, top, right, bottom = ft.getbbox(char, stroke_width=stroke)
    pad = 2 + stroke
    w, h = max(1, right - left) + 2 * pad, max(1, bottom - top) + 2 * pad
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text(
        (pad - left, pad - top), char, fill=255, font=ft, stroke_width=stroke, stroke_fill=255
    )
    box = im.getbbox()
    return None if box is None else im.crop(box)


def render(char: str, style: GlyphStyle = GlyphStyle(), *, size: int = 32) -> np.ndarray:
    """One image of ``char``: uint8 ``(size, size)``, white strokes on black.

    >>> img = render("A")
    >>> img.shape, img.dtype, int(img.max()), int(img[0, 0])
    ((32, 32), dtype('uint8'), 255, 0)
    """
    _check_char(char)
    if style.font not in FONTS:
        raise InvalidArgumentError(f"font {style.font!r} is not one of glyphs.FONTS")
    if not 1 <= style.resolution <= 256 or size < 1:
        raise InvalidArgumentError(
            f"resolution must be in 1..256 and size positive, got {style.resolution}, {size}"
        )
    glyph = _ink(char, style.font, int(style.stroke))
    if glyph is None:
        raise InvalidArgumentError(f"{style.font} draws nothing for {char!r} (U+{ord(char):04X})")
    res = int(style.resolution)
    canvas = res * OVERSAMPLE
    w, h = glyph.size
    scale = style.fill * canvas / max(w, h)
    sa = math.sqrt(style.aspect)
    t = math.radians(style.rotation)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])  # y points down
    fwd = rot @ np.array([[1.0, style.shear], [0.0, 1.0]]) @ np.diag([scale * sa, scale / sa])
    inv = np.linalg.inv(fwd)
    centre_out = canvas / 2 + canvas * np.array([style.shift_x, style.shift_y])
    offset = np.array([w / 2, h / 2]) - inv @ centre_out
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    img = glyph.transform(
        (canvas, canvas),
        Image.Transform.AFFINE,
        tuple(float(c) for c in coeffs),
        Image.Resampling.BILINEAR,
    ).reduce(OVERSAMPLE)
    if style.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(float(style.blur)))
    a = np.asarray(img, dtype=np.int64)
    if style.intensity != 1.0:
        a = (a * int(round(style.intensity * 1024)) + 512) >> 10
    if style.levels > 1:
        top = style.levels - 1  # exact integer rounding, as digits.py does for 0..16
        a = (((a * top + 127) // 255) * 255 + top // 2) // top
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if res != size:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img)


def sample_style(rng: np.random.Generator, char: str, *, augment: bool = True) -> GlyphStyle:
    """Draw a :class:`GlyphStyle` for ``char`` from ``rng``: a random font covering it and,
    with ``augment``, random resolution, size, aspect, rotation, shear, shift, stroke,
    blur, brightness and quantisation (the pretraining distribution).

    >>> rng = np.random.default_rng(0)
    >>> sample_style(rng, "A") == sample_style(np.random.default_rng(0), "A")
    True
    """
    fonts = fonts_for(char)
    if not fonts:
        raise InvalidArgumentError(f"no font of glyphs.FONTS draws {char!r} (U+{ord(char):04X})")
    font = fonts[int(rng.integers(len(fonts)))]
    if not augment:
        return GlyphStyle(font=font)
    u = rng.random(12)
    resolution = (8, 8, 12, 16, 16, 24, 32, 32)[int(u[0] * 8)]
    return GlyphStyle(
        font=font,
        resolution=resolution,
        fill=round(0.65 + 0.33 * u[1], 4),
        aspect=round(math.exp(0.25 * (2 * u[2] - 1)), 4),
        rotation=round(12.0 * (2 * u[3] - 1), 3),
        shear=round(0.2 * (2 * u[4] - 1), 4),
        shift_x=round(0.08 * (2 * u[5] - 1), 4),
        shift_y=round(0.08 * (2 * u[6] - 1), 4),
        stroke=(0, 0, 1, 2, 3, 4)[int(u[7] * 6)],
        blur=round(0.8 * u[9], 3) if u[8] < 0.3 else 0.0,
        intensity=round(0.7 + 0.3 * u[10], 3),
        levels=17 if resolution <= 12 and u[11] < 0.5 else 0,
    )


def _check_classes(classes: Iterable[str]) -> tuple[str, ...]:
    chars = tuple(classes)
    if not chars:
        raise InvalidArgumentError("classes is empty: pass glyph characters, e.g. HELDOUT_CLASSES")
    for c in chars:
        _check_char(c)
    dup = sorted({c for c in chars if chars.count(c) > 1})
    if dup:
        raise InvalidArgumentError(f"duplicate glyph classes {dup}")
    return chars


def render_set(
    classes: Iterable[str],
    per_class: int,
    *,
    seed: int = 0,
    stream: int = 0,
    size: int = 32,
    augment: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class: ``(images uint8 (N, size, size), labels int64)``.

    Labels are positions in ``classes``; images come class by class. Class ``c``'s images
    depend only on ``(seed, stream, c)`` (one generator each): use different ``stream``
    values for disjoint train and validation draws.

    >>> x, y = render_set("AK", 3, seed=1)
    >>> x.shape, y.tolist()
    ((6, 32, 32), [0, 0, 0, 1, 1, 1])
    >>> bool(np.array_equal(x[3:], render_set("K", 3, seed=1)[0]))
    True
    """
    chars = _check_classes(classes)
    if not isinstance(per_class, int) or per_class < 1:
        raise InvalidArgumentError(f"per_class must be a positive int, got {per_class!r}")
    images = np.empty((len(chars) * per_class, size, size), np.uint8)
    for i, c in enumerate(chars):
        rng = np.random.default_rng([int(seed), int(stream), ord(c)])
        for j in range(per_class):
            images[i * per_class + j] = render(c, sample_style(rng, c, augment=augment), size=size)
    labels = np.repeat(np.arange(len(chars), dtype=np.int64), per_class)
    return images, labels


def to_rgb_array(images: np.ndarray) -> np.ndarray:
    """Grey uint8 ``(N, H, W)`` -> uint8 ``(N, H, W, 3)`` (grey replicated, like the PNGs)."""
    images = np.asarray(images, dtype=np.uint8)
    return np.repeat(images[..., None], 3, axis=-1)


def channel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of the pixels in [0, 1] (grey: one value for all channels)."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    return float(x.mean()), float(x.std())


# ----------------------------------------------------------------------------- export


def export_imagefolder(
    out_dir: str | os.PathLike[str],
    *,
    classes: Iterable[str] = HELDOUT_CLASSES,
    per_class: int = 10,
    val_per_class: int = 30,
    seed: int = 0,
    size: int = 32,
    split: Sequence[str] = ("train", "val"),
) -> Path:
    """Write glyph classes as an ImageFolder tree ``out_dir/<split>/u<hex>/*.png`` (RGB).

    The default classes are :data:`HELDOUT_CLASSES`, never used in pretraining. The
    first split folder gets ``per_class`` augmented images per class (generator stream
    0), the second ``val_per_class`` (stream 1, so no image is in both); with one split
    name only the first is written. Folder names come from :func:`class_folder`; the
    marker ``.zoo_glyphs.json`` maps them back to the characters. Idempotent and atomic
    like :func:`zoo_core_plugins.zoonet.digits.export_imagefolder`.
    """
    chars = _check_classes(classes)
    split = check_split_names(split)
    if len(split) > 2:
        raise InvalidArgumentError(f"split must name one or two folders, got {split!r}")
    counts = (per_class, val_per_class)[: len(split)]
    for n in counts:
        if not isinstance(n, int) or n < 1:
            raise InvalidArgumentError(f"images per class must be positive ints, got {counts}")
    marker = {
        "format": _FORMAT,
        "dataset": "zoo_core_plugins.zoonet.glyphs",
        "classes": {class_folder(c): c for c in chars},
        "counts": dict(zip(split, counts, strict=True)),
        "seed": seed,
        "size": size,
        "fonts_sha256": fonts_digest(),
    }

    def write(tmp: Path) -> None:
        for stream, (name, n) in enumerate(zip(split, counts, strict=True)):
            for c in chars:
                d = tmp / name / class_folder(c)
                d.mkdir(parents=True)
                images, _ = render_set(c, n, seed=seed, stream=stream, size=size)
                for k, img in enumerate(to_rgb_array(images)):
                    Image.fromarray(img).save(d / f"glyph_{k:04d}.png", format="PNG")

    return export_tree(out_dir, MARKER, marker, write)

