"""A plugin author's package, installed through real entry points (a ``*.dist-info`` on
the path, read by importlib.metadata in every new process): listed -> built -> checked
-> fine-tuned from its pinned weights -> pushed -> loaded back in a new process; without
the package installed, the load says which distribution to install."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

from journeylib import Journey, metrics

PLUGIN = '''
import zoo_core

WEIGHTS = {weights!r}
SHA256 = {sha256!r}


@zoo_core.hookimpl
def register_backbones(register):
    register(zoo_core.BackboneSpec(
        name="acme_tiny",
        builder="acme_nets:acme_tiny",
        head="classifier",
        stages=("stem", "body"),
        weights=(zoo_core.WeightsSpec(tag="glyphs", source=WEIGHTS, sha256=SHA256,
                                      num_classes=7),),
        default_weights="glyphs",
        data_config=zoo_core.DataConfig(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5),
                                        std=(0.5, 0.5, 0.5), interpolation="bilinear",
                                        crop_pct=1.0),
        license="apache-2.0",
    ))


def acme_tiny(num_classes=7, **kwargs):
    import torch.nn as nn

    class AcmeTiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                      nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.classifier = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.classifier(self.body(self.stem(x)))

    return AcmeTiny()
'''


def install_plugin(site: Path, weights: Path, sha256: str) -> None:
    (site / "acme_nets.py").write_text(
        textwrap.dedent(PLUGIN).format(weights=str(weights), sha256=sha256), encoding="utf-8")
    info = site / "acme_nets-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nets\nVersion: 1.2.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text("[zoo_core]\nacme = acme_nets\n", encoding="utf-8")


def test_plugin_package_through_entry_points_to_the_hub_and_back(
        journey: Journey, digit_folder: Path) -> None:
    site = journey.home / "site"
    site.mkdir()
    weights = journey.home / "acme_tiny_glyphs.safetensors"
    # The author's "pretrained" weights: the architecture with seeded random values.
    install_plugin(site, weights, "0" * 64)
    journey.extra_path.append(str(site))
    journey.python(f"""
        import torch, acme_nets
        from safetensors.torch import save_file
        torch.manual_seed(3)
        m = acme_nets.acme_tiny(num_classes=7)
        save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, {str(weights)!r})
        """)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert journey.zoo("hash", str(weights)).stdout.split()[0] == sha
    (site / "acme_nets.py").unlink()
    (site / "acme_nets-1.2.0.dist-info").rename(journey.home / "old-dist-info")
    install_plugin(site, weights, sha)

    listed = journey.zoo("list", "acme*")
    assert listed.stdout.split() == ["acme_tiny"]
    plugins = journey.zoo("plugins")
    assert "acme" in plugins.stdout and "acme-nets" in plugins.stdout
    journey.zoo("plugins", "--check", "acme")
    info = journey.zoo("info", "acme_tiny")
    assert "glyphs" in info.stdout

    run = journey.home / "run"
    journey.zoo("finetune", "acme_tiny", "--data", str(digit_folder), "--strategy",
                "partial:1", "--epochs", "2", "--out", str(run), "--no-progress")
    assert len(metrics(run)["epochs"]) == 2
    card_config = json.loads((run / "best" / "config.json").read_text(encoding="utf-8"))
    assert card_config["num_classes"] == 5

    journey.zoo("push", str(run / "best"), "acme/tiny-digits")
    ours = journey.logits(f"__import__('zoo_core').build_model({str(run / 'best')!r})")
    assert journey.logits("__import__('zoo_core').build_model('hf-hub:acme/tiny-digits')") \
        == ours

    # A user without the plugin package: the load names what to install.
    journey.extra_path.clear()
    missing = journey.python(
        "__import__('zoo_core').build_model('hf-hub:acme/tiny-digits')", ok=False)
    assert missing.returncode != 0
    assert "acme-nets" in missing.output or "acme_tiny" in missing.output
