"""zoonet: zoo_core's own small CPU-friendly backbones, pretrained on rendered glyphs.

A first-party plugin registered through the same ``zoo_core`` entry-point group as any
third-party one. Importing it is cheap: no torch, no numpy, no scikit-learn; the
architecture lives in :mod:`zoo_core_plugins.zoonet.arch` and is imported only by the
builder; the datasets live in :mod:`.glyphs` (pretraining source), :mod:`.digits` and
:mod:`.textures` (transfer targets).

Weights tag ``glyphs`` (the default): trained by ``scripts/pretrain_zoonet.py`` on the
546 :data:`glyphs.PRETRAIN_CLASSES` (letters of nine scripts and symbols, no digits and
no digit look-alikes) drawn from the fonts that ship inside matplotlib, augmented, grey
32x32 replicated to RGB. The digits are never seen, nor are the 90
``glyphs.HELDOUT_CLASSES``: both are transfer tasks.

Weights tag ``digits04`` (older, kept because it costs two small files): trained on
scikit-learn's handwritten digits 0-4. Its features do not transfer to digits 5-9 (see
the README); load it with ``weights="digits04"`` or ``zoonet_s.digits04``. It was made by
an earlier version of the script (git history), which no longer regenerates it.
"""

from __future__ import annotations

import zoo_core
from zoo_core import BackboneSpec, DataConfig, WeightsSpec

GLYPHS_TAG = "glyphs"
DIGITS04_TAG = "digits04"

# sha256 pins of the shipped weights, printed by scripts/pretrain_zoonet.py
# (mirrored in registry.toml).
ZOONET_S_GLYPHS_SHA256 = "be3c802e322be9d6062f83bea38e55d6ae3d9dd0c99fd5c442d8978ac8eb9a48"
ZOONET_M_GLYPHS_SHA256 = "6c022f764cd46940fd3325f74c4a89b238f9a291fffec0170f61dd77ccf75f11"
ZOONET_S_DIGITS04_SHA256 = "8101963c450042ead294a6ebbc6caad3ead3d113b86b326c1089e5289ef428da"
ZOONET_M_DIGITS04_SHA256 = "16241d9987443a56b954776a1aac77646353aceecaef56060669cc1c140149be"

# Pixel statistics of the pretraining images (glyphs.render_set of PRETRAIN_CLASSES,
# 80 per class, seed 0) in [0, 1]; grey, so one value for all 3 channels. Recomputed and
# checked by scripts/pretrain_zoonet.py. The digits04 weights were trained with the digits'
# own statistics (below) and carry their own data config.
GLYPHS_MEAN = 0.2281
GLYPHS_STD = 0.3098
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3265

# The pretraining classes in label order (label i = GLYPH_LABELS[i]); kept as a literal so
# that listing models imports nothing (tests check it equals glyphs.PRETRAIN_CLASSES).
GLYPH_LABELS: tuple[str, ...] = tuple(
    'ACDEGHKLMNPQTUVWXYdefhjknrtuyΓΣΦΨΩαβηλμν'
    'πρσυφχωДЛЦШЩЪЫЮЯифЂЉЋЏђÆ×Þ÷þŁŊŒƀƆƇƊƏƑƒƕƖ'
    'ƝƢƣƤƫƳƵƸƺƾǂȡȤȴȵȸȻȾȿɀɁɂɇɊɍɐɕɗɟɠɥɨɬɮɱɲɳɷɹɻ'
    'ɾɿʁʆʇʉʍʎʐʑʕʛʤʦʧʨʩʪʬʭʮʯԳԴԶԷԸԹԺԻԿՀՃՄՆՇՌՎՐՒ'
    'ՔՖթլխձմնվבדךלמףצקרשათკლრსუქწჭჯ"#%&()*,./'
    ':;<>\\^_`¢£¥¦©«¬®¶»¿₠₢₣₦₧₪€₭₯₸₹₺₽℄℔℞℟℣℥℮Ⅎ'
    '⅁⅃⅄⅋↑↓↗↘↙↜↝↞↢↣↩↪↯↰↲↳↴↵↶↷↹↺↻↼↽↾⇀⇁⇃⇄⇅⇆⇈⇉⇊⇖'
    '⇗⇘⇤⇧⇩⇰⇱⇲⇶∆∈∋∍∏∔∖√∛∝∞∠∡∢∩∪∮∵∷∸∹∺∿≂≃≅≆≋≌≎≏'
    '≐≒≓≗≝≞≟≣≤≥≧≪≫≶≷≺≼≽≾≿⊂⊃⊇⊊⊋⊌⊏⊐⊔⊘⊞⊠⊡⊢⊥⊦⊧⊨⊩⊪'
    '⊱⊻⊼⊽⊾⊿⋄⋆⋇⋈⋋⋌⋐⋔⋕⋛⋜⋝⋩⋮⋰⋱⋲⋵⋸⋺⋽⋿⌀⌂⌅⌆⌈⌌⌎⌏⌑⌒⌓⌔'
    '⌕⌘⌝⌥⌦⌧⌫⌬⌶⌸⌼⌿⍀⍁⍅⍉⍏⍓⍘⍚⍜⍠⍢⍨⍩⍪⎁⎇⎉⎋⎔⎝⎠⎤⎨⎬⏎⏏⏨□'
    '▫▭▲▶▻▼▽◀◁◅◊◌◑◓◜◝◟◡◢◤◥◧◩◪◫◴◸◹☂☃☄☇☈☉☋☍☎☑☔☕'
    '☘☙☚☛☜☝☟☠☡☢☣☥☪☭☱☼☽☾♃♄♅♇♈♉♋♌♍♎♏♐♓♔♖♘♡♤♨♩♪♫'
    '♬♭♲♳♾♿⚁⚅⚍⚐⚑⚒⚓⚔⚗⚟⚡⚢⚣⚤⚦⚧⚩⚲⛀⛁'
)
DIGITS04_LABELS = ("0", "1", "2", "3", "4")
WEIGHTS_LICENSE = "BSD-3-Clause (weights trained by zoo_core on scikit-learn's digits)"
GLYPHS_WEIGHTS_LICENSE = (
    "Apache-2.0 (weights trained by zoo_core on glyphs drawn from the DejaVu (Bitstream Vera "
    "license), STIX (SIL OFL 1.1) and BaKoMa Computer Modern fonts bundled with matplotlib)"
)

DATA_CONFIG = DataConfig(
    input_size=(3, 32, 32),
    mean=(GLYPHS_MEAN,) * 3,
    std=(GLYPHS_STD,) * 3,
    interpolation="bilinear",
    crop_pct=1.0,
    first_conv="stem.0",
)

DIGITS04_DATA_CONFIG = DataConfig(
    input_size=(3, 32, 32),
    mean=(DIGITS_MEAN,) * 3,
    std=(DIGITS_STD,) * 3,
    interpolation="bilinear",
    crop_pct=1.0,
    first_conv="stem.0",
)

_PINS = {
    "zoonet_s": {GLYPHS_TAG: ZOONET_S_GLYPHS_SHA256, DIGITS04_TAG: ZOONET_S_DIGITS04_SHA256},
    "zoonet_m": {GLYPHS_TAG: ZOONET_M_GLYPHS_SHA256, DIGITS04_TAG: ZOONET_M_DIGITS04_SHA256},
}
_DESCRIPTIONS = {
    "zoonet_s": "zoonet small: 3-stage conv-BN-ReLU CNN for 32x32 inputs, ~75k parameters",
    "zoonet_m": "zoonet medium: 3-stage conv-BN-ReLU CNN for 32x32 inputs, ~0.46M parameters",
}
# One stage per resolution (each halves it), the stride-1 stem folded into the first, as
# for every other provider: partial:3 trains the whole backbone.
STAGES = ("stages.0", "stages.1", "stages.2")


def weights_source(name: str, tag: str = GLYPHS_TAG) -> str:
    """The ``pkg:`` source of a shipped weights file."""
    return f"pkg:zoo_core_plugins/zoonet/weights/{name}-{tag}.safetensors"


def _weights(name: str) -> tuple[WeightsSpec, ...]:
    glyph_weights = WeightsSpec(
        tag=GLYPHS_TAG,
        source=weights_source(name, GLYPHS_TAG),
        sha256=_PINS[name][GLYPHS_TAG],
        num_classes=len(GLYPH_LABELS),
        label_names=GLYPH_LABELS,
        license=GLYPHS_WEIGHTS_LICENSE,
        description=(
            f"{name} pretrained by scripts/pretrain_zoonet.py on {len(GLYPH_LABELS)} glyph "
            "classes (Latin, Greek, Cyrillic, IPA, Armenian, Hebrew, Georgian letters and "
            "symbols; no digits) drawn from matplotlib's bundled fonts, 32x32 RGB"
        ),
    )
    digit_weights = WeightsSpec(
        tag=DIGITS04_TAG,
        source=weights_source(name, DIGITS04_TAG),
        sha256=_PINS[name][DIGITS04_TAG],
        num_classes=5,
        label_names=DIGITS04_LABELS,
        license=WEIGHTS_LICENSE,
        data_config=DIGITS04_DATA_CONFIG,
        description=(
            f"{name} pretrained on scikit-learn's handwritten digits 0-4 (8x8 grey upscaled "
            "bilinear to 32x32 RGB); older weights that do not transfer well"
        ),
    )
    return (glyph_weights, digit_weights)


def backbone_specs() -> list[BackboneSpec]:
    """The specs this plugin registers (no torch needed)."""
    return [
        BackboneSpec(
            name=name,
            builder=f"zoo_core_plugins.zoonet.arch:{name}",
            head="head",
            stages=STAGES,
            weights=_weights(name),
            default_weights=GLYPHS_TAG,
            data_config=DATA_CONFIG,
            license="Apache-2.0",
            description=_DESCRIPTIONS[name],
        )
        for name in _PINS
    ]


@zoo_core.hookimpl
def register_backbones(register):
    for spec in backbone_specs():
        register(spec)
