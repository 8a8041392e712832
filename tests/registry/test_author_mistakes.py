"""One throwaway plugin package, ``oops-nets``, with one mistake per plugin (issue 19),
installed through real entry points: each gets its diagnosis from ``zoo plugins
--check`` (one subprocess for all of them), ``check_plugin`` and ``build_model``, naming
the plugin, the distribution and the model."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo_core

ZOO = str(Path(sys.executable).with_name("zoo"))
DIST = "oops-nets"

COMMON = '''
import zoo_core

DC = zoo_core.DataConfig(input_size=(3, 16, 16))
WEIGHTS = "pkg:oops_nets/weights/tiny7.safetensors"


def tiny(num_classes):
    import torch.nn as nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1),
                                      nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.classifier = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.classifier(self.body(self.stem(x)))

    return Tiny()


def swallowing(num_classes, **kwargs):  # takes anything, uses nothing: torchvision-like
    return tiny(num_classes)


def glyphs(**changes):
    return zoo_core.WeightsSpec(**{"tag": "glyphs", "source": WEIGHTS, "num_classes": 7,
                                   **changes})


def spec(name, **changes):
    return zoo_core.BackboneSpec(**{"name": name, "builder": "oops_nets:tiny",
                                    "head": "classifier", "stages": ("stem", "body"),
                                    "data_config": DC, **changes})
'''

# plugin (entry-point name) -> what its register_backbones registers; "nomarker" forgets
# @hookimpl, "heavy" imports torch while registering
PLUGINS = {
    "oops_good": 'register(spec("good_net", weights=(glyphs(),)))',
    "oops_badhead": 'register(spec("badhead_net", head="fc", weights=(glyphs(),)))',
    "oops_badtag": 'register(spec("badtag_net", weights=(glyphs(),), '
                   'default_weights="imagenet"))',
    "oops_nomarker_with_a_long_plugin_name": 'register(spec("never_net"))',
    "oops_heavy": 'import torch  # noqa\n    register(spec("heavy_net"))',
    "oops_nested": 'register(spec("nested_net", stages=("stem", "body.0")))',
    "oops_firstconv": 'register(spec("firstconv_net", data_config=zoo_core.DataConfig('
                      'input_size=(3, 16, 16), first_conv="stem.1")))',
    "oops_swallow": 'register(spec("swallow_net", builder="oops_nets:swallowing"))',
    "oops_shortsha": 'register(spec("shortsha_net", weights=(glyphs(sha256="abc123"),)))',
    "oops_nostages": 'register(spec("nostages_net", stages=(), weights=(glyphs(),)))',
}


@pytest.fixture
def oops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    package = site / "oops_nets"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text(COMMON, encoding="utf-8")
    for plugin, body in PLUGINS.items():
        marker = "" if "nomarker" in plugin else "@zoo_core.hookimpl\n"
        (package / f"{plugin}.py").write_text(
            f"from oops_nets import *  # noqa\nimport zoo_core\n\n\n{marker}"
            f"def register_backbones(register):\n    {body}\n", encoding="utf-8")
    info = site / "oops_nets-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.3\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[zoo_core]\n" + "".join(f"{p} = oops_nets.{p}\n" for p in PLUGINS), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    importlib.invalidate_caches()
    import oops_nets

    torch.manual_seed(0)
    save_file(oops_nets.tiny(7).state_dict(), str(package / "weights" / "tiny7.safetensors"))
    yield site
    for name in [m for m in sys.modules if m == "oops_nets" or m.startswith("oops_nets.")]:
        del sys.modules[name]


def _zoo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([ZOO, *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def _who(plugin: str, model: str) -> list[str]:
    return [repr(plugin), DIST, repr(model)]


@pytest.mark.slow
def test_zoo_plugins_check_diagnoses_each_mistake(oops):
    checked = _zoo("plugins", "--check", "--json", "--no-weights")
    assert checked.returncode == 1, checked.stderr
    report = json.loads(checked.stdout)

    def problems(plugin: str) -> str:
        return "\n".join(p for row in report[plugin] for p in row["problems"])

    assert all(row["ok"] for row in report["oops_good"])
    assert "'fc'" in problems("oops_badhead") and "no such module" in problems("oops_badhead")
    assert "default_weights='imagenet' is not one of its weights tags (glyphs)" in problems(
        "oops_badtag")
    long = "oops_nomarker_with_a_long_plugin_name"
    assert "without @zoo_core.hookimpl" in problems(long) and DIST in problems(long)
    assert "imports torch" in problems("oops_heavy") and DIST in problems("oops_heavy")
    assert "'body.0' is a layer inside block 'body'" in problems("oops_nested")
    assert "first_conv='stem.1' is a BatchNorm2d, not a convolution" in problems(
        "oops_firstconv")
    swallow_notes = "\n".join(n for row in report["oops_swallow"] for n in row["notes"])
    assert "ignores drop_path_rate, drop_rate," in swallow_notes
    # with weights: the short sha256 names `zoo hash`
    short = _zoo("plugins", "--check", "oops_shortsha")
    assert short.returncode == 1 and "`zoo hash FILE`" in short.stdout
    assert "zoo_core.weights._" not in short.stdout

    listed = _zoo("plugins")
    lines = listed.stdout.splitlines()
    header = lines[0]
    rows = [line for line in lines if line.startswith(("oops_", "timm ", "zoonet "))]
    assert len(rows) == len(PLUGINS) + 2
    for row in rows:  # columns aligned under a long plugin name
        assert row.index(" 0.3 " if row.startswith("oops") else " 0.1.0 ") \
            == header.index(" version")
    warning = lines[lines.index(next(r for r in rows if r.startswith(long))) + 1]
    assert "warning:" in warning and "@zoo_core.hookimpl" in warning

    info = _zoo("info", "badtag_net", "--no-params")
    assert "default_weights: imagenet" in info.stdout
    assert "not one of its weights tags" in info.stdout


def test_build_model_diagnoses_what_it_can(oops):
    # the most common build: pretrained weights, a new head: SpecError, not WeightsError
    with pytest.raises(zoo_core.SpecError) as err:
        zoo_core.build_model("badhead_net", 5, "partial:1")
    assert all(part in str(err.value) for part in _who("oops_badhead", "badhead_net"))
    assert "'fc'" in str(err.value) and "classifier" in str(err.value)
    with pytest.raises(zoo_core.SpecError, match="default_weights='imagenet'") as err:
        zoo_core.build_model("badtag_net", 3, "linear_probe")
    assert all(part in str(err.value) for part in _who("oops_badtag", "badtag_net"))
    assert zoo_core.get_model_info("badtag_net").default_weights == "imagenet"
    assert zoo_core.get_model_info("good_net").default_weights == "glyphs"
    with pytest.raises(zoo_core.InvalidArgumentError, match="ignores model argument") as err:
        zoo_core.build_model("swallow_net", 3, "scratch", drop_rate=0.1)
    assert all(part in str(err.value) for part in _who("oops_swallow", "swallow_net"))
    # no stages: no build at all, so auto (which measures on built models) never reaches a
    # partial:1 the model cannot apply
    for strategy in ("linear_probe", "auto"):
        with pytest.raises(zoo_core.SpecError, match="declares no stages") as err:
            zoo_core.build_model("nostages_net", 5, strategy)
        assert all(part in str(err.value) for part in _who("oops_nostages", "nostages_net"))
    model = zoo_core.build_model("good_net", 5, "partial:1")
    assert model.zoo.weights_tag == "glyphs" and model.classifier.out_features == 5
    plugins = {p.name: p for p in zoo_core.list_plugins()}
    long = plugins["oops_nomarker_with_a_long_plugin_name"]
    assert long.status == "ok" and long.num_models == 0
    assert "without @zoo_core.hookimpl" in long.error
    assert plugins["oops_good"].error is None


@pytest.mark.slow
def test_check_plugin_raises_naming_plugin_distribution_model(oops):
    assert all(r.ok for r in zoo_core.check_plugin("oops_good"))
    for plugin, model, text in [
        ("oops_nested", "nested_net", "inside block"),
        ("oops_firstconv", "firstconv_net", "not a convolution"),
        ("oops_badtag", "badtag_net", "not one of its weights tags"),
    ]:
        with pytest.raises(zoo_core.SpecError, match=text) as err:
            zoo_core.check_plugin(plugin)
        assert all(part in str(err.value) for part in [repr(plugin), DIST, model])
    # torch is imported in this process already: a fresh one tells
    (row,) = [r for r in zoo_core.check_plugin("oops_heavy", raise_on_error=False)
              if not r.ok]
    assert row.model == "(plugin)" and "imports torch" in row.problems[0]
    assert "move heavy imports into the builder" in row.problems[0]


def test_a_torchvision_builder_swallowing_drop_rate_is_refused():
    with pytest.raises(zoo_core.InvalidArgumentError, match="ignores model argument") as err:
        zoo_core.build_model("torchvision/mobilenet_v3_small", 3, "scratch", drop_rate=0.1)
    assert "dropout=" in str(err.value)
    model = zoo_core.build_model("torchvision/mobilenet_v3_small", 3, "scratch", dropout=0.1)
    assert model.zoo.model_args == {"dropout": 0.1} and model.classifier[2].p == 0.1


@pytest.mark.parametrize("key, alternative", [
    ("scriptable", "torch.jit.script(model)"), ("exportable", "zoo export MODEL"),
    ("no_jit", "timm.create_model(name, no_jit=True)")])
def test_refused_timm_switches_name_what_to_do(key, alternative):
    with pytest.raises(zoo_core.InvalidArgumentError) as err:
        zoo_core.build_model("zoonet_s", 3, "scratch", **{key: True})
    assert alternative in str(err.value)


def test_zoo_list_prints_the_shadowing_warning_once(oops, tmp_path, monkeypatch):
    shadow = tmp_path / "site" / "oops_nets" / "oops_good.py"
    shadow.write_text(shadow.read_text(encoding="utf-8").replace('"good_net"', '"zoonet_s"'),
                      encoding="utf-8")
    registry = tmp_path / "registry.toml"
    registry.write_text('[plugins]\nprefer = ["zoonet"]\n', encoding="utf-8")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(registry))
    listed = _zoo("list", "zoonet_s")
    assert listed.stdout.split() == ["oops_good/zoonet_s", "zoonet_s"]
    assert listed.stderr.count("is registered by") == 1, listed.stderr
    assert textwrap.shorten(listed.stderr, 40).startswith("zoo: warning: model name")
