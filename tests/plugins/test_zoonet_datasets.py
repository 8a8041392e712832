"""zoonet's synthetic datasets: glyphs (pretraining source, held-out target) and textures."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo_core
from zoo_core_plugins.zoonet import glyphs, textures

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- classes


def test_glyph_classes_have_no_digits():
    assert len(glyphs.CLASSES) == len(set(glyphs.CLASSES)) == 636
    for c in glyphs.CLASSES:
        assert len(c) == 1 and not c.isdigit(), c
        assert unicodedata.numeric(c, None) is None, c
        assert c not in glyphs.DIGIT_LOOKALIKES, c
        assert unicodedata.normalize("NFKD", c) == c, c
    for look_alike in "OoIlSZBgq0123456789":
        assert look_alike not in glyphs.CLASSES


def test_heldout_glyphs_are_disjoint_from_pretraining():
    pre, held = set(glyphs.PRETRAIN_CLASSES), set(glyphs.HELDOUT_CLASSES)
    assert not pre & held
    assert pre | held == set(glyphs.CLASSES)
    assert len(glyphs.PRETRAIN_CLASSES) == 546 and len(glyphs.HELDOUT_CLASSES) == 90
    assert glyphs.HELDOUT_CLASSES == glyphs.CLASSES[6::7]


def test_every_glyph_class_has_enough_fonts():
    for c in glyphs.CLASSES:
        fonts = glyphs.fonts_for(c)
        assert len(fonts) >= glyphs.MIN_FONTS, (c, fonts)
        assert set(fonts) <= set(glyphs.FONTS)
    assert glyphs.fonts_for("A")[-6:] == glyphs.ASCII_LETTER_FONTS
    assert not set(glyphs.fonts_for("Ж")) & set(glyphs.ASCII_LETTER_FONTS)  # TeX cmaps


@pytest.mark.slow
def test_class_list_is_what_the_selection_script_prints():
    """The documented rules (digits, look-alikes, near-duplicates) give exactly CLASSES."""
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "select_glyph_classes.py")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    body = out[out.index("CLASS_TEXT = (") + len("CLASS_TEXT = (") : out.rindex(")")]
    assert "".join(eval(line) for line in body.split()) == glyphs.CLASS_TEXT


# ----------------------------------------------------------------------------- rendering


def test_glyph_rendering_is_deterministic_and_seeded():
    a, ya = glyphs.render_set("AЖ∞", 4, seed=3)
    b, yb = glyphs.render_set("AЖ∞", 4, seed=3)
    assert a.dtype == np.uint8 and a.shape == (12, 32, 32)
    assert a.tobytes() == b.tobytes() and ya.tolist() == yb.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert not np.array_equal(a, glyphs.render_set("AЖ∞", 4, seed=4)[0])
    assert not np.array_equal(a, glyphs.render_set("AЖ∞", 4, seed=3, stream=1)[0])
    # a class's images do not depend on the other classes rendered with it
    assert np.array_equal(a[4:8], glyphs.render_set("Ж", 4, seed=3)[0])
    # augmented images vary; white strokes on a black background
    assert len({im.tobytes() for im in a[:4]}) == 4
    assert all(im[0, 0] < 64 and im.max() > 128 for im in a)


def test_glyph_render_pixels_and_style():
    clean = glyphs.render("K")
    assert clean.shape == (32, 32) and clean.max() == 255 and clean[0, 0] == 0
    low = glyphs.render("K", glyphs.GlyphStyle(resolution=8, levels=17))
    assert low.shape == (32, 32) and not np.array_equal(low, clean)
    # 8x8 native, bilinear upscale: the same as digits.to_pil of the 8x8 image
    small = glyphs.render("K", glyphs.GlyphStyle(resolution=8, levels=17), size=8)
    assert set(np.unique(small).tolist()) <= {(q * 255 + 8) // 16 for q in range(17)}
    big = np.asarray(Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(big, low)
    assert glyphs.to_rgb_array(low[None]).shape == (1, 32, 32, 3)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: glyphs.render("AB"), "one character"),
        (lambda: glyphs.render("A", glyphs.GlyphStyle(font="Comic.ttf")), "not one of"),
        (lambda: glyphs.render_set("AA", 2), "duplicate"),
        (lambda: glyphs.render_set("", 2), "empty"),
        (lambda: glyphs.render_set("A", 0), "positive"),
        (lambda: glyphs.sample_style(np.random.default_rng(0), "中"), "no font"),
        (lambda: textures.render_set(["plaid"], 2), "unknown texture"),
        (lambda: textures.render_set([], 2), "empty"),
    ],
)
def test_bad_input_gets_a_clear_error(call, needle):
    with pytest.raises(zoo_core.InvalidArgumentError, match=needle):
        call()


def test_texture_rendering_is_deterministic_and_distinct():
    a, y = textures.render_set(textures.CLASSES, 3, seed=0)
    b, _ = textures.render_set(textures.CLASSES, 3, seed=0)
    assert a.shape == (30, 32, 32) and a.dtype == np.uint8 and a.tobytes() == b.tobytes()
    assert y.tolist() == np.repeat(np.arange(10), 3).tolist()
    assert not np.array_equal(a, textures.render_set(textures.CLASSES, 3, seed=1)[0])
    assert np.array_equal(a[9:12], textures.render_set(["checker"], 3, seed=0)[0])
    # the classes differ in their spectra: fine noise has more high frequency than coarse
    def high_freq(img):
        f = np.abs(np.fft.fft2(img.astype(float) - img.mean()))
        return f[8:24, 8:24].sum() / f.sum()

    fine = textures.CLASSES.index("noise_fine")
    coarse = textures.CLASSES.index("noise_coarse")
    assert min(high_freq(im) for im in a[3 * fine : 3 * fine + 3]) > max(
        high_freq(im) for im in a[3 * coarse : 3 * coarse + 3]
    )


def test_renderers_do_not_import_torch():
    code = (
        "import sys; from zoo_core_plugins.zoonet import glyphs, textures; "
        "glyphs.render_set('A', 1); textures.render_set(['dots'], 1); "
        "heavy = [m for m in ('torch', 'timm', 'torchvision', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- export


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_glyph_export_is_reproducible_and_idempotent(tmp_path):
    classes = glyphs.HELDOUT_CLASSES[:3]
    a = glyphs.export_imagefolder(tmp_path / "a", classes=classes, per_class=2, val_per_class=3)
    b = glyphs.export_imagefolder(tmp_path / "b", classes=classes, per_class=2, val_per_class=3)
    assert _digest_tree(a) == _digest_tree(b)
    folders = sorted(glyphs.class_folder(c) for c in classes)
    assert sorted(p.name for p in (a / "train").iterdir()) == folders
    assert all(len(list((a / "val" / f).glob("*.png"))) == 3 for f in folders)
    marker = json.loads((a / glyphs.MARKER).read_text())
    assert marker["classes"] == {glyphs.class_folder(c): c for c in classes}
    with Image.open(next((a / "train" / folders[0]).glob("*.png"))) as im:
        assert im.mode == "RGB" and im.size == (32, 32)
    # the PNGs hold exactly the rendered pixels (train = stream 0)
    x, _ = glyphs.render_set(classes[:1], 2, seed=0, stream=0)
    f = a / "train" / glyphs.class_folder(classes[0]) / "glyph_0001.png"
    with Image.open(f) as im:
        assert np.array_equal(np.asarray(im), glyphs.to_rgb_array(x)[1])
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}
    glyphs.export_imagefolder(tmp_path / "a", classes=classes, per_class=2, val_per_class=3)
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*.png")} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temp dirs left


def test_texture_export_layout_and_refusal(tmp_path):
    out = textures.export_imagefolder(tmp_path / "t", per_class=2, val_per_class=1)
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(textures.CLASSES)
    assert sum(1 for _ in (out / "val").rglob("*.png")) == 10
    assert _digest_tree(out) == _digest_tree(
        textures.export_imagefolder(tmp_path / "u", per_class=2, val_per_class=1)
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing"):
        textures.export_imagefolder(tmp_path / "mine", per_class=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user data"
