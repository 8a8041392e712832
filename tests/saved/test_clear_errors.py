"""Config values are checked when read, and unclear messages name the thing and the fix.

A saved folder's config.json (the same code reads a Hub repo's) is refused when it is
read: an unknown ``interpolation``, a ``crop_pct`` out of range, input channels that are
not those of the weights, a strategy the model cannot take. Blocked plugins, a directory
named ``model.safetensors``, a plugin that does not register a model at the same version,
and ``ZOO_CORE_CACHE`` pointing at a file each get a message that says what and how to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core
from zoo_core import ConfigError, HubError, UnknownModelError, WeightsError
from zoo_core.cli import main

ZOO = Path(sys.executable).parent / "zoo"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = zoo_core.build_model("zoonet_s", 3, "finetune", label_names=("a", "b", "c"))
    return zoo_core.save_pretrained(model, tmp_path_factory.mktemp("s") / "rgb")


def _edited(saved: Path, tmp_path: Path, edit) -> Path:
    """A copy of the saved folder with its config.json changed by ``edit(config)``."""
    folder = tmp_path / "edited"
    folder.mkdir()
    for name in ("model.safetensors", "README.md"):
        (folder / name).write_bytes((saved / name).read_bytes())
    config = json.loads((saved / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ------------------------------------------------------------ config values, when read


@pytest.mark.parametrize(("key", "value", "words"), [
    ("interpolation", "evil", "pretrained_cfg.interpolation is 'evil', not one of bilinear"),
    ("crop_pct", 0, "pretrained_cfg.crop_pct must be a number in (0, 2]"),
    ("crop_pct", "big", "pretrained_cfg.crop_pct must be a number"),
])
def test_bad_data_config_is_refused_when_read(saved, tmp_path, key, value, words) -> None:
    folder = _edited(saved, tmp_path, lambda c: c["pretrained_cfg"].update({key: value}))
    with pytest.raises(HubError) as info:
        zoo_core.build_model(folder)
    assert words in str(info.value) and "config.json of local-dir:" in str(info.value)


def test_in_chans_that_the_weights_do_not_have_is_refused(saved, tmp_path) -> None:
    folder = _edited(saved, tmp_path, lambda c: c.update(model_args={"in_chans": 1}))
    with pytest.raises(HubError, match=r"says 1 input channel\(s\) \(model_args.in_chans\), "
                       r"but the first conv of its model.safetensors \(stem.0.weight\) takes 3"):
        zoo_core.build_model(folder)
    # on purpose: the caller's in_chans adapts the RGB weights, as for any weights
    gray = zoo_core.build_model(folder, in_chans=1)
    assert gray.stem[0].weight.shape[1] == 1


def test_input_size_channels_that_the_weights_do_not_have_are_refused(saved, tmp_path):
    def edit(config):
        config["pretrained_cfg"].update(input_size=[1, 32, 32], mean=[0.5], std=[0.5])

    with pytest.raises(HubError, match=r"pretrained_cfg.input_size\[0\]"):
        zoo_core.build_model(_edited(saved, tmp_path, edit))


@pytest.mark.parametrize("strategy", ["partial:999", "bogus"])
def test_a_strategy_from_the_config_is_attributed_to_it(saved, tmp_path, strategy) -> None:
    folder = _edited(saved, tmp_path, lambda c: c["zoo_core"].update(strategy=strategy))
    with pytest.raises(HubError) as info:
        zoo_core.build_model(folder)
    text = str(info.value)
    assert "config.json of local-dir:" in text and "zoo_core.strategy" in text
    assert "fix config.json" in text
    # the caller's strategy wins over the bad recorded one
    assert zoo_core.build_model(folder, strategy="finetune").zoo.strategy == "finetune"


@pytest.mark.parametrize(("pushed", "words", "not_words"), [
    ("0.1.0", "upgrading will not help", "pip install -U"),
    ("0.0.1", "which dropped or renamed it: install zoo-core==0.0.1", "pip install -U"),
    ("99.0", "pip install -U 'zoo-core>=99.0'", "will not help"),
])
def test_install_advice_follows_the_versions(saved, tmp_path, pushed, words, not_words):
    def edit(config):
        config["zoo_core"].update(model="zoonet_gone", distribution="zoo-core",
                                  distribution_version=pushed)

    folder = _edited(saved, tmp_path, edit)
    with pytest.raises(HubError) as info:
        zoo_core.build_model(folder)
    text = str(info.value)
    assert "needs model 'zoonet_gone' of plugin 'zoonet'" in text
    assert words in text and not_words not in text


# ----------------------------------------------------------------------- blocked plugins


@pytest.mark.parametrize(("env", "value", "words"), [
    ("ZOO_CORE_BLOCK_PLUGINS", "zoonet", "blocked by ZOO_CORE_BLOCK_PLUGINS=zoonet"),
    ("ZOO_CORE_PLUGINS", "timm", "not in ZOO_CORE_PLUGINS=timm (add 'zoonet' to it"),
])
def test_a_blocked_plugin_is_not_an_unknown_model(monkeypatch, saved, env, value, words):
    monkeypatch.setenv(env, value)
    registry = zoo_core.Registry()
    for name in ("zoonet_s", "zoonet/zoonet_s"):
        with pytest.raises(UnknownModelError) as info:
            zoo_core.build_model(name, 3, registry=registry)
        assert "plugin 'zoonet', which is installed but" in str(info.value)
        assert words in str(info.value) and "unknown model" not in str(info.value)
    with pytest.raises(HubError, match=words.replace("(", r"\(")):
        zoo_core.build_model(saved, registry=registry)


# ----------------------------------------------- a directory named model.safetensors


def test_a_directory_named_model_safetensors(saved, tmp_path, capsys) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_bytes((saved / "config.json").read_bytes())
    (folder / "model.safetensors").mkdir()
    with pytest.raises(HubError, match="its model.safetensors is a directory, not a file"):
        zoo_core.build_model(folder)
    with pytest.raises(WeightsError, match="a directory named like a weights file"):
        zoo_core.build_model("zoonet_s", 3, weights=str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match="is a directory, not a file"):
        zoo_core.convert_checkpoint(folder / "model.safetensors", tmp_path / "out.safetensors")
    # zoo push names the user's folder, not a staged copy of it
    assert main(["push", str(folder), "me/broken"]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'model.safetensors'} is a directory, not a file" in err
    assert err.count("\n") == 1 and err.startswith("zoo: error: ")


# ------------------------------------------------------------- ZOO_CORE_CACHE is a file


def test_zoo_core_cache_pointing_at_a_file(tmp_path, monkeypatch) -> None:
    afile = tmp_path / "cache-file"
    afile.write_text("not a folder")
    env = {**os.environ, "ZOO_CORE_CACHE": str(afile)}
    for argv in (["cache", "verify"], ["cache", "clean"]):
        proc = subprocess.run([str(ZOO), *argv], env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"zoo: error: ZOO_CORE_CACHE={afile}: the cache folder")
        assert "is a file, not a directory" in proc.stderr and "Traceback" not in proc.stderr
    monkeypatch.setenv("ZOO_CORE_CACHE", str(afile / "below"))
    with pytest.raises(ConfigError, match=r"is under .*cache-file, which is a file"):
        zoo_core.finetune("zoonet_s", None, epochs=1, progress=False, verbose=False)
    assert "zoonet_s" in zoo_core.list_models("zoonet*")  # listing never needs the cache
