"""Discovery through real entry points, failure isolation, duplicates, suggestions, config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core
from zoo_core.registry._catalog import load_catalog
from zoo_core.registry._registry import Registry, get_registry


def test_third_party_distribution_is_discovered_and_buildable(make_dist, tiny_plugin_source):
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("acmenet", "acme_zoo"),
              entry_name="acme", version="2.3")
    assert "acmenet" in zoo_core.list_models("acme*")
    (plugin,) = [p for p in zoo_core.list_plugins() if p.name == "acme"]
    assert (plugin.distribution, plugin.version, plugin.status, plugin.num_models) == (
        "acme-zoo", "2.3", "ok", 1)
    model = zoo_core.build_model("acmenet", 4, "scratch")
    assert model.zoo.plugin == "acme" and model.zoo.distribution == "acme-zoo"
    assert model.head.out_features == 4
    # also buildable by its qualified name, and listed without weights
    assert zoo_core.build_model("acme/acmenet", 2, "scratch").zoo.name == "acmenet"
    assert "acmenet" in zoo_core.list_models(pretrained=False, plugin="acme")
    assert zoo_core.list_models(pretrained=True, plugin="acme") == []


def test_broken_plugin_is_reported_while_others_work(make_dist, tiny_plugin_source):
    make_dist("broken-zoo", "broken_zoo", "import does_not_exist_anywhere\n",
              entry_name="broken")
    make_dist("raising-zoo", "raising_zoo", """
        import zoo_core
        @zoo_core.hookimpl
        def register_backbones(register):
            raise RuntimeError("boom in hook")
    """, entry_name="raising")
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("acmenet", "acme_zoo"))
    plugins = {p.name: p for p in zoo_core.list_plugins()}
    assert plugins["broken"].status == "failed"
    assert "does_not_exist_anywhere" in plugins["broken"].error
    assert "broken-zoo" in plugins["broken"].error
    assert plugins["raising"].status == "failed" and "boom in hook" in plugins["raising"].error
    assert "register_backbones" in plugins["raising"].error
    assert plugins["acme_zoo"].status == "ok" and plugins["zoonet"].status == "ok"
    zoo_core.build_model("acmenet", 2, "scratch")
    with pytest.raises(zoo_core.UnknownModelError, match="broken.*raising|raising.*broken"):
        zoo_core.build_model("no_such_net", 2, "scratch")


def test_strict_mode_makes_plugin_failures_fatal(make_dist, monkeypatch):
    make_dist("broken-zoo", "broken_zoo", "raise ImportError('nope')\n", entry_name="broken")
    monkeypatch.setenv("ZOO_CORE_STRICT_PLUGINS", "1")
    with pytest.raises(zoo_core.PluginLoadError, match="broken"):
        zoo_core.list_models()


def test_allow_block_and_autoload_switches(make_dist, tiny_plugin_source, monkeypatch):
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("acmenet", "acme_zoo"))
    monkeypatch.setenv("ZOO_CORE_BLOCK_PLUGINS", "acme_zoo")
    status = {p.name: p.status for p in Registry().plugins()}
    assert status["acme_zoo"] == "blocked" and status["zoonet"] == "ok"
    monkeypatch.delenv("ZOO_CORE_BLOCK_PLUGINS")
    monkeypatch.setenv("ZOO_CORE_PLUGINS", "acme_zoo")
    reg = Registry()
    assert reg.list_models() == ["acmenet"]
    monkeypatch.delenv("ZOO_CORE_PLUGINS")
    monkeypatch.setenv("ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert Registry().plugins() == []
    import zoo_core_plugins.zoonet as zoonet

    explicit = Registry(plugins=[("mine", zoonet)])
    assert explicit.list_models() == ["zoonet_m", "zoonet_s"]


def test_duplicate_names_error_names_both_distributions(make_dist, tiny_plugin_source):
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("twin", "acme_zoo"))
    make_dist("other-zoo", "other_zoo", tiny_plugin_source("twin", "other_zoo"))
    with pytest.raises(zoo_core.DuplicateModelError) as err:
        zoo_core.build_model("twin", 2, "scratch")
    assert "acme-zoo" in str(err.value) and "other-zoo" in str(err.value)
    assert zoo_core.build_model("other_zoo/twin", 2, "scratch").zoo.distribution == "other-zoo"
    assert {"acme_zoo/twin", "other_zoo/twin"} <= set(zoo_core.list_models("*twin"))


def test_prefer_in_registry_toml_resolves_duplicates(make_dist, tiny_plugin_source, tmp_path,
                                                     monkeypatch):
    make_dist("acme-zoo", "acme_zoo", tiny_plugin_source("twin", "acme_zoo"))
    make_dist("other-zoo", "other_zoo", tiny_plugin_source("twin", "other_zoo"))
    user = tmp_path / "user.toml"
    user.write_text('[plugins]\nprefer = ["other_zoo", "acme_zoo"]\n')
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    assert zoo_core.build_model("twin", 2, "scratch").zoo.plugin == "other_zoo"
    assert "twin" in zoo_core.list_models("twin")


def test_first_party_overlap_resolves_by_preference():
    # resnet18 exists in timm and torchvision; registry.toml prefers timm.
    assert sorted(get_registry().providers("resnet18")) == ["timm", "torchvision"]
    assert zoo_core.get_model_info("resnet18").plugin == "timm"
    assert zoo_core.get_model_info("torchvision/resnet18").plugin == "torchvision"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(zoo_core.UnknownModelError, match="Did you mean: .*zoonet_s"):
        zoo_core.get_model_info("zoonet_ss")
    with pytest.raises(zoo_core.UnknownModelError, match="unknown plugin 'nope'"):
        zoo_core.get_model_info("nope/resnet18")
    with pytest.raises(zoo_core.UnknownModelError, match="no weights tag 'xx'"):
        zoo_core.get_model_info("zoonet_s.xx")


def test_arch_tag_names_select_weights():
    model = zoo_core.build_model("zoonet_s.digits04", 5, "linear_probe")
    assert model.zoo.weights_tag == "digits04"


def test_bad_spec_layout_error_names_plugin(make_dist, tiny_plugin_source):
    source = tiny_plugin_source("badnet", "bad_zoo").replace('head="head"', 'head="classifier"')
    make_dist("bad-zoo", "bad_zoo", source)
    with pytest.raises(zoo_core.SpecError,
                       match=r"plugin 'bad_zoo' \(bad-zoo 1\.0\).*'classifier'"):
        zoo_core.build_model("badnet", 2, "scratch")


def test_register_rejects_non_specs_and_in_plugin_duplicates(make_dist):
    make_dist("weird-zoo", "weird_zoo", """
        import zoo_core
        @zoo_core.hookimpl
        def register_backbones(register):
            register({"name": "dict-is-not-a-spec"})
    """)
    (p,) = [p for p in zoo_core.list_plugins() if p.name == "weird_zoo"]
    assert p.status == "failed" and "BackboneSpec" in p.error


def test_family_name_list_is_cached_by_version(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path))
    calls = []

    def make_plugin(version: str):
        class Plugin:
            @zoo_core.hookimpl
            def register_backbones(self, register):
                def list_names():
                    calls.append(version)
                    return {"famnet": []}

                register(zoo_core.BackboneFamily("fam", version, list_names,
                                                 lambda n: None))  # type: ignore[arg-type]
        return Plugin()

    for _ in range(2):
        assert Registry(autoload=False, plugins=[("fam", make_plugin("1"))]).list_models() == [
            "famnet"]
    assert calls == ["1"]
    Registry(autoload=False, plugins=[("fam", make_plugin("2"))]).list_models()
    assert calls == ["1", "2"]


def test_name_lookup_is_memoised_and_sees_a_later_registration():
    """Every build resolves its name: a plugin's name table is built once, not per lookup
    (timm's 1,371 names), and a spec registered afterwards is still found."""
    def spec(name: str) -> zoo_core.BackboneSpec:
        return zoo_core.BackboneSpec(name=name, builder=lambda num_classes: None, head="head",
                                     stages=("stem",))

    class Plugin:
        @zoo_core.hookimpl
        def register_backbones(self, register):
            register(spec("firstnet"))

    reg = Registry(autoload=False, plugins=[("memo", Plugin())])
    plugin = reg._plugins["memo"]
    assert reg.providers("firstnet") == ["memo"]
    assert reg._names_of(plugin) is reg._names_of(plugin)  # memoised
    assert reg.providers("laternet") == []
    reg._register(plugin, spec("laternet"))
    assert reg.providers("laternet") == ["memo"]
    assert reg.resolve("laternet").spec.name == "laternet"


# -- registry.toml ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[plugins]\nprefer = 'timm'\n", "line 2: key 'plugins.prefer'"),
        ("[defaults]\nstrategy = 'fast'\n", "line 2: key 'defaults.strategy'"),
        ("[defaults]\nstrategy = 'first:0'\n", "first:0 would train the head only"),
        ("[weights.zoonet_s.x]\nsha256 = 'abc'\n", "line 1: key 'weights.zoonet_s.x'"),
        ("[weights.zoonet_s.x]\nsource = 'a'\nsha256 = 'abc'\n", "line 3"),
        ("bogus = 1\n", "unknown key"),
        ("[auto]\nplenty_per_class = 0\n", "line 2"),
        ("[plugins\nallow = []\n", "malformed TOML"),
    ],
)
def test_malformed_registry_toml_names_file_line_key(tmp_path, monkeypatch, text, needle):
    user = tmp_path / "bad.toml"
    user.write_text(text)
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    with pytest.raises(zoo_core.ConfigError) as err:
        load_catalog()
    assert str(user) in str(err.value) and needle in str(err.value)


def test_registry_override_pins_and_aliases(tmp_path, monkeypatch):
    user = tmp_path / "user.toml"
    user.write_text(
        '[aliases]\ndigits = "zoonet_m"\n'
        '[weights.zoonet_s.mirror]\nsource = "/srv/mirror/zoonet_s.safetensors"\n'
        f'sha256 = "{"0" * 64}"\nnum_classes = 5\n'
    )
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    spec = zoo_core.get_model_info("zoonet_s")
    mirror = spec.weights_tag("mirror")
    assert mirror is not None and mirror.source.startswith("/srv/mirror")
    assert zoo_core.get_model_info("digits").name == "zoonet_m"
    assert zoo_core.get_model_info("zoonet").name == "zoonet_s"  # project alias still there
    with pytest.raises(zoo_core.ConfigError, match="not a file"):
        load_catalog(tmp_path / "missing.toml")


def test_registry_toml_pins_match_plugin_pins():
    """The top-level catalog and the plugin agree on the shipped weights' sha256."""
    catalog = load_catalog()
    for model, tags in catalog.weights.items():
        spec = zoo_core.get_model_info(model)
        for tag, pin in tags.items():
            assert spec.weights_tag(tag).sha256 == pin.sha256


# -- cheap import and listing ------------------------------------------------------------

HEAVY = ("torch", "timm", "torchvision", "safetensors", "huggingface_hub", "numpy")


def _heavy_modules_after(code: str, env_cache: Path) -> list[str]:
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ,
                                          "ZOO_CORE_CACHE": str(env_cache)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_zoo_core_imports_no_heavy_library(session_cache):
    assert _heavy_modules_after("import zoo_core", session_cache) == []


def test_zoo_list_with_warm_cache_imports_no_heavy_library(session_cache):
    zoo_core.list_models()  # warms the name cache of this session
    code = "import io, contextlib\nfrom zoo_core.cli import main\n" \
           "with contextlib.redirect_stdout(io.StringIO()): main(['list'])"
    assert _heavy_modules_after(code, session_cache) == []


def test_public_all_is_sorted_and_complete():
    assert zoo_core.__all__ == sorted(zoo_core.__all__)
    for name in zoo_core.__all__:
        assert getattr(zoo_core, name) is not None


def test_registry_default_strategy_may_be_surgical(tmp_path, monkeypatch):
    user = tmp_path / "user.toml"
    user.write_text("[defaults]\nstrategy = 'stage:0'\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    assert load_catalog().default_strategy == "stage:0"
