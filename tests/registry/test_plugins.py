"""The plugin contract, checked: ``check_plugin``, build-time SpecErrors, shadowed names.

Each test installs a throwaway third-party distribution (``make_dist``), so discovery runs
through real ``importlib.metadata`` entry points.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

import zoo_core
from zoo_core.cli import main


def _tiny(tiny_plugin_source, name: str, module: str, **replace: str) -> str:
    source = tiny_plugin_source(name, module)
    for old, new in replace.items():
        source = source.replace(old, new)
    return source


def test_check_plugin_passes_a_good_plugin(make_dist, tiny_plugin_source):
    make_dist("good-zoo", "good_zoo", tiny_plugin_source("goodnet", "good_zoo"))
    (result,) = zoo_core.check_plugin("good_zoo")
    assert result.ok and result.model == "goodnet"
    assert "forward order" in result.checked
    assert result.notes == ()  # it declares its 16 px input


def test_check_notes_a_spec_that_inherits_imagenet_input_defaults(make_dist, tiny_plugin_source):
    make_dist("dflt-zoo", "dflt_zoo", _tiny(tiny_plugin_source, "dfltnet", "dflt_zoo", **{
        "data_config=zoo_core.DataConfig(input_size=(3, 16, 16)),": ""}))
    (result,) = zoo_core.check_plugin("dflt_zoo")
    assert result.ok and "data_config is all defaults" in result.notes[0]


def test_reversed_stages_fail_check_and_build(make_dist, tiny_plugin_source):
    make_dist("rev-zoo", "rev_zoo", _tiny(tiny_plugin_source, "revnet", "rev_zoo", **{
        'stages=("stem", "body")': 'stages=("body", "stem")'}))
    with pytest.raises(zoo_core.SpecError, match=r"(?s)rev_zoo.*rev-zoo.*revnet.*input -> output"):
        zoo_core.check_plugin("rev_zoo")
    with pytest.raises(zoo_core.SpecError, match="input -> output"):
        zoo_core.build_model("revnet", 3, "scratch")


def test_forward_order_catches_what_registration_order_cannot(make_dist, tiny_plugin_source):
    # modules defined body-first but run stem-first: only a forward pass tells
    source = _tiny(tiny_plugin_source, "twisted", "tw_zoo", **{
        "    m.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())\n":
        "",
        "    m.head = nn.Linear(8, num_classes)\n":
        "    m.head = nn.Linear(8, num_classes)\n    m.stem = nn.Sequential(nn.Conv2d(3, 4, 3, "
        "padding=1), nn.BatchNorm2d(4), nn.ReLU())\n",
        'stages=("stem", "body")': 'stages=("body", "stem")'})
    make_dist("tw-zoo", "tw_zoo", source)
    (result,) = zoo_core.check_plugin("tw_zoo", raise_on_error=False)
    assert not result.ok and "a forward pass runs stem, body, head" in result.problems[0]


def test_head_must_be_the_final_classifier(make_dist, tiny_plugin_source):
    make_dist("hd-zoo", "hd_zoo", _tiny(tiny_plugin_source, "hdnet", "hd_zoo", **{
        'head="head"': 'head="stem.0"', 'stages=("stem", "body")': 'stages=("body",)'}))
    with pytest.raises(zoo_core.SpecError, match=r"head 'stem.0' outputs 4 features but "
                                                 r"num_classes is 3"):
        zoo_core.build_model("hdnet", 3, "scratch")


@pytest.mark.parametrize(("body", "needle"), [
    ("    raise ValueError('boom')\n", "raised ValueError: boom"),
    ("    return None\n", "returned NoneType, not a torch.nn.Module"),
])
def test_a_broken_builder_is_a_spec_error_naming_plugin_dist_model(make_dist, tiny_plugin_source,
                                                                   capsys, body, needle):
    source = tiny_plugin_source("brknet", "brk_zoo").replace(
        "def make(num_classes):\n", "def make(num_classes):\n" + body)
    make_dist("brk-zoo", "brk_zoo", source)
    with pytest.raises(zoo_core.SpecError) as err:
        zoo_core.build_model("brknet", 3, "scratch")
    assert "plugin 'brk_zoo' (brk-zoo 1.0), model 'brknet'" in str(err.value)
    assert needle in str(err.value)
    code = main(["build", "brknet", "-n", "3", "-s", "scratch"])
    _, stderr = capsys.readouterr()
    assert code == 2 and needle in stderr and "Traceback" not in stderr


def test_check_plugin_verifies_local_weights_sha_and_shapes(make_dist, tiny_plugin_source,
                                                            tmp_path):
    good = {"stem.0.weight": torch.zeros(4, 3, 3, 3), "stem.0.bias": torch.zeros(4),
            "stem.1.weight": torch.ones(4), "stem.1.bias": torch.zeros(4),
            "stem.1.running_mean": torch.zeros(4), "stem.1.running_var": torch.ones(4),
            "stem.1.num_batches_tracked": torch.zeros((), dtype=torch.long),
            "body.0.weight": torch.zeros(8, 4, 3, 3), "body.0.bias": torch.zeros(8),
            "body.1.weight": torch.ones(8), "body.1.bias": torch.zeros(8),
            "body.1.running_mean": torch.zeros(8), "body.1.running_var": torch.ones(8),
            "body.1.num_batches_tracked": torch.zeros((), dtype=torch.long),
            "head.weight": torch.zeros(5, 8), "head.bias": torch.zeros(5)}
    ok_file, bad_file = tmp_path / "ok.safetensors", tmp_path / "bad.safetensors"
    save_file(good, ok_file)
    save_file({**good, "body.0.weight": torch.zeros(8, 4, 1, 1)}, bad_file)
    digest = zoo_core.hash_file(ok_file)
    weights = (f'weights=(zoo_core.WeightsSpec(tag="ok", source={str(ok_file)!r}, '
               f'sha256="{digest}", num_classes=5), '
               f'zoo_core.WeightsSpec(tag="badpin", source={str(ok_file)!r}, sha256="{"0" * 64}"),'
               f' zoo_core.WeightsSpec(tag="shapes", source={str(bad_file)!r}, num_classes=5)),\n'
               "        head=")
    make_dist("w-zoo", "w_zoo", _tiny(tiny_plugin_source, "wnet", "w_zoo",
                                      **{"head=": weights}))
    (result,) = zoo_core.check_plugin("w_zoo", raise_on_error=False)
    text = "\n".join(result.problems)
    assert "'ok'" not in text
    assert "weights 'badpin'" in text and "sha256 mismatch" in text
    assert "weights 'shapes'" in text and "[8, 4, 1, 1] in the file, [8, 4, 3, 3]" in text
    assert any("'shapes'" in n and "not pinned" in n for n in result.notes)


def test_zoo_plugins_check_cli(make_dist, tiny_plugin_source, capsys):
    make_dist("good-zoo", "good_zoo", tiny_plugin_source("goodnet", "good_zoo"))
    make_dist("rev-zoo", "rev_zoo", _tiny(tiny_plugin_source, "revnet", "rev_zoo", **{
        'stages=("stem", "body")': 'stages=("body", "stem")'}))
    assert main(["plugins", "--check", "good_zoo"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "goodnet" in out
    assert main(["plugins", "--check", "rev_zoo"]) == 1
    out = capsys.readouterr().out
    assert "revnet" in out and "input -> output" in out
    assert main(["plugins", "--check", "zoonet"]) == 0


def test_shadowed_name_warns_once_naming_both_distributions(make_dist, tiny_plugin_source,
                                                            capsys):
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("resnet18", "acme_zoo"))
    with pytest.warns(zoo_core.ShadowedModelWarning) as record:
        assert zoo_core.get_model_info("resnet18").plugin == "timm"
    (w,) = record
    text = str(w.message)
    assert "acme-zoo 1.0" in text and "zoo-core" in text
    assert "'acme_zoo/resnet18'" in text and "'timm/resnet18'" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo_core.get_model_info("resnet18")  # once per name
        assert zoo_core.get_model_info("acme_zoo/resnet18").plugin == "acme_zoo"
        assert zoo_core.list_models("resnet18") == ["acme_zoo/resnet18", "resnet18"]
        assert main(["list", "--long", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "shadowed by timm/resnet18" in out and "shadows acme_zoo/resnet18" in out


def test_cli_shows_a_shadowed_name_warning_as_one_line(make_dist, tiny_plugin_source, capsys):
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("resnet18", "acme_zoo"))
    assert main(["list", "resnet18"]) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["acme_zoo/resnet18", "resnet18"]
    assert err.startswith("zoo: warning: model name 'resnet18' is registered by")
    assert "warnings.warn" not in err and len(err.strip().splitlines()) == 1


def test_registry_with_explicit_plugins_and_no_autoload(monkeypatch):
    import zoo_core_plugins.zoonet as zoonet

    monkeypatch.setenv("ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = zoo_core.Registry(plugins=[("zoonet", zoonet)])
    assert reg.list_models() == ["zoonet_m", "zoonet_s"]
    model = zoo_core.build_model("zoonet_s", 3, "linear_probe", registry=reg)
    assert model.zoo.plugin == "zoonet"


def test_first_party_plugins_import_only_the_public_api():
    import pathlib
    import re

    root = pathlib.Path(zoo_core.__file__).parent.parent / "plugins"
    private = [f"{p.relative_to(root)}: {m.group(0)}"
               for p in root.rglob("*.py")
               for m in re.finditer(r"zoo_core\._\w+", p.read_text(encoding="utf-8"))]
    assert private == []


def test_registry_takes_plugins_as_entry_points_name_them(make_dist, tiny_plugin_source):
    make_dist("good-zoo", "good_zoo", tiny_plugin_source("goodnet", "good_zoo"))
    reg = zoo_core.Registry(plugins={"good": "good_zoo", "gone": "no_such_module"},
                            autoload=False)
    assert reg.list_models() == ["goodnet"]
    status = {p.name: (p.status, p.error) for p in reg.plugins()}
    assert status["good"] == ("ok", None)
    assert status["gone"][0] == "failed" and "no_such_module" in status["gone"][1]
