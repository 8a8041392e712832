"""zoonet: zoo_core's own small CPU-friendly backbones, pretrained on embedded digits.

A first-party plugin registered through the same ``zoo_core`` entry-point group as any
third-party one. Importing it is cheap: no torch, no numpy, no scikit-learn; the
architecture lives in :mod:`zoo_core_plugins.zoonet.arch` and is imported only by the
builder, the dataset helpers in :mod:`zoo_core_plugins.zoonet.digits`.

Weights tag ``digits04``: trained by ``scripts/pretrain_zoonet.py`` on scikit-learn's
bundled handwritten digits 0-4 (the *source* split), 32x32 RGB (grey replicated). The
digits 5-9 (the *target* split) are never seen in pretraining; they are the transfer
task (``digits.export_imagefolder``).
"""

from __future__ import annotations

import zoo_core
from zoo_core import BackboneSpec, DataConfig, WeightsSpec

# sha256 pins of the shipped weights, printed by scripts/pretrain_zoonet.py
# (mirrored in registry.toml).
ZOONET_S_DIGITS04_SHA256 = "8101963c450042ead294a6ebbc6caad3ead3d113b86b326c1089e5289ef428da"
ZOONET_M_DIGITS04_SHA256 = "16241d9987443a56b954776a1aac77646353aceecaef56060669cc1c140149be"

# Pixel statistics of the source split (digits 0-4) after the standard preprocessing
# (8x8 grey -> uint8 -> bilinear 32x32 -> [0, 1]); grey, so one value for all 3 channels.
# Recomputed and checked by scripts/pretrain_zoonet.py.
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3265

DIGITS04_LABELS = ("0", "1", "2", "3", "4")
WEIGHTS_LICENSE = "BSD-3-Clause (weights trained by zoo_core on scikit-learn's digits)"

DATA_CONFIG = DataConfig(
    input_size=(3, 32, 32),
    mean=(DIGITS_MEAN,) * 3,
    std=(DIGITS_STD,) * 3,
    interpolation="bilinear",
    crop_pct=1.0,
    first_conv="stem.0",
)

_PINS = {"zoonet_s": ZOONET_S_DIGITS04_SHA256, "zoonet_m": ZOONET_M_DIGITS04_SHA256}
_DESCRIPTIONS = {
    "zoonet_s": "zoonet small: 3-stage conv-BN-ReLU CNN for 32x32 inputs, ~75k parameters",
    "zoonet_m": "zoonet medium: 3-stage conv-BN-ReLU CNN for 32x32 inputs, ~0.46M parameters",
}
STAGES = ("stem", "stages.0", "stages.1", "stages.2")


def weights_source(name: str, tag: str = "digits04") -> str:
    """The ``pkg:`` source of a shipped weights file."""
    return f"pkg:zoo_core_plugins/zoonet/weights/{name}-{tag}.safetensors"


def backbone_specs() -> list[BackboneSpec]:
    """The specs this plugin registers (no torch needed)."""
    specs = []
    for name, sha in _PINS.items():
        weights = WeightsSpec(
            tag="digits04",
            source=weights_source(name),
            sha256=sha,
            num_classes=5,
            label_names=DIGITS04_LABELS,
            license=WEIGHTS_LICENSE,
            description=(
                f"{name} pretrained by scripts/pretrain_zoonet.py on scikit-learn's "
                "handwritten digits 0-4 (8x8 grey upscaled bilinear to 32x32 RGB); "
                "digits 5-9 were never seen"
            ),
        )
        specs.append(
            BackboneSpec(
                name=name,
                builder=f"zoo_core_plugins.zoonet.arch:{name}",
                head="head",
                stages=STAGES,
                weights=(weights,),
                default_weights="digits04",
                data_config=DATA_CONFIG,
                license="Apache-2.0",
                description=_DESCRIPTIONS[name],
            )
        )
    return specs


@zoo_core.hookimpl
def register_backbones(register):
    for spec in backbone_specs():
        register(spec)
