#!/usr/bin/env python
"""Choose the glyph classes of ``zoo_core_plugins.zoonet.glyphs`` (prints ``CLASS_TEXT``).

    python scripts/select_glyph_classes.py            # prints the constant to paste
    python scripts/select_glyph_classes.py --verbose  # also the excluded characters and why

Candidates, in order of preference: the letters of the Latin, Greek and Cyrillic alphabets,
other letters (Latin-1, Latin extended, IPA, Armenian, Hebrew, Georgian), then symbols
(ASCII and Latin-1 punctuation and signs, currency, letter-like, arrows, mathematical
operators, technical, geometric and miscellaneous symbols). A candidate is kept when:

1. it is a letter (not a modifier letter), a symbol or punctuation; has no Unicode numeric
   value; has no decomposition (NFKD is itself: no accents, ligatures or compatibility
   forms); at least ``glyphs.MIN_FONTS`` fonts draw it;
2. it is not in ``glyphs.DIGIT_LOOKALIKES`` and its clean renders correlate with every
   digit's renders (same fonts) below ``--digit-max`` (0.80);
3. its clean renders correlate with every class kept before it below ``--dup-max`` (0.85).

"Clean renders": :func:`glyphs.render` at native resolution 16, stroke 2, fill 0.85, no
other augmentation, in each of up to six reference fonts that draw the character;
correlation of two characters = mean over their common reference fonts of the Pearson
correlation of the 32x32 images. Deterministic (no randomness at all); takes a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import unicodedata

import numpy as np

from zoo_core_plugins.zoonet import glyphs

REFERENCE_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "DejaVuSans-Bold.ttf",
    "cmr10.ttf",
)
BLOCKS = (  # (first, last) code points, in order of preference
    (0x41, 0x5A), (0x61, 0x7A),  # Latin
    (0x391, 0x3A9), (0x3B1, 0x3C9),  # Greek
    (0x410, 0x44F), (0x400, 0x40F), (0x450, 0x45F),  # Cyrillic
    (0xC0, 0xFF), (0x100, 0x24F), (0x250, 0x2AF),  # Latin-1 letters, extended, IPA
    (0x531, 0x556), (0x561, 0x587),  # Armenian
    (0x5D0, 0x5EA),  # Hebrew
    (0x10D0, 0x10F0),  # Georgian
    (0x21, 0x40), (0x5B, 0x60), (0x7B, 0x7E), (0xA1, 0xBF),  # ASCII, Latin-1 signs
    (0x20A0, 0x20BF), (0x2100, 0x214F), (0x2190, 0x21FF),  # currency, letter-like, arrows
    (0x2200, 0x22FF), (0x2300, 0x23FF), (0x25A0, 0x25FF),  # math, technical, geometric
    (0x2600, 0x26FF),  # miscellaneous symbols
)  # fmt: skip


def candidates() -> list[str]:
    seen, out = set(), []
    for lo, hi in BLOCKS:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if ch not in seen:
                seen.add(ch)
                out.append(ch)
    return out


def basic_reason(ch: str) -> str | None:
    """Why rule 1 rejects ``ch`` (None: it passes)."""
    cat = unicodedata.category(ch)
    if cat[0] not in "LSP" or cat == "Lm":
        return f"category {cat}"
    if unicodedata.numeric(ch, None) is not None:
        return "numeric"
    if unicodedata.normalize("NFKD", ch) != ch:
        return "decomposes"
    if len(glyphs.fonts_for(ch)) < glyphs.MIN_FONTS:
        return f"only {len(glyphs.fonts_for(ch))} fonts"
    return None


def clean_vectors(ch: str) -> np.ndarray | None:
    """(len(REFERENCE_FONTS), 1024) standardised clean renders; zero rows where not drawn."""
    fonts = set(glyphs.fonts_for(ch))
    out = np.zeros((len(REFERENCE_FONTS), 32 * 32))
    for i, f in enumerate(REFERENCE_FONTS):
        if f not in fonts:
            continue
        style = glyphs.GlyphStyle(font=f, resolution=16, stroke=2)
        try:
            v = glyphs.render(ch, style).astype(np.float64).ravel()
        except ValueError:  # the font maps the code point to an empty glyph
            return None
        v -= v.mean()
        n = np.linalg.norm(v)
        if n == 0:
            return None
        out[i] = v / n
    return out


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean correlation over common fonts: a (A, F, D), b (B, F, D) -> (A, B)."""
    dots = np.einsum("afd,bfd->ab", a, b)
    common = (np.abs(a).sum(-1) > 0).astype(float) @ (np.abs(b).sum(-1) > 0).astype(float).T
    return np.where(common > 0, dots / np.maximum(common, 1), 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digit-max", type=float, default=0.80)
    p.add_argument("--dup-max", type=float, default=0.85)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)

    rejected: dict[str, list[str]] = {}
    pool, vecs = [], []
    for ch in candidates():
        why = basic_reason(ch)
        v = None if why else clean_vectors(ch)
        if why is None and v is None:
            why = "draws nothing in a font"
        if why is not None:
            rejected.setdefault(why, []).append(ch)
            continue
        pool.append(ch)
        vecs.append(v)
    x = np.stack(vecs)
    digit_vecs = np.stack([clean_vectors(d) for d in "0123456789"])
    to_digits = similarity(x, digit_vecs).max(axis=1)
    sim = similarity(x, x)

    kept: list[int] = []
    for i, ch in enumerate(pool):
        if ch in glyphs.DIGIT_LOOKALIKES:
            rejected.setdefault("digit look-alike (hand list)", []).append(ch)
        elif to_digits[i] >= args.digit_max:
            rejected.setdefault(f"correlates with a digit >= {args.digit_max}", []).append(ch)
        elif kept and sim[i, kept].max() >= args.dup_max:
            twin = pool[kept[int(np.argmax(sim[i, kept]))]]
            rejected.setdefault(f"near-duplicate (>= {args.dup_max})", []).append(ch + twin)
        else:
            kept.append(i)
    text = "".join(pool[i] for i in kept)
    if args.verbose:
        for why, chars in rejected.items():
            print(f"# rejected, {why}: {len(chars)}", file=sys.stderr)
            print(textwrap.fill(" ".join(chars), 100), file=sys.stderr)
    print(f"# {len(text)} classes (digit-max {args.digit_max}, dup-max {args.dup_max})")
    print("CLASS_TEXT = (")
    for i in range(0, len(text), 40):
        print(f"    {text[i : i + 40]!r}")
    print(")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
