"""build_model("path/to/dir") and build_model("local-dir:PATH"): a saved folder loads back
exactly as an hf-hub: repo does (labels, strategy, head, model_args); bad folders are clear
errors. Also: the loader's modules form no import cycle."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import zoo_core  # noqa: E402
from zoo_core.errors import HubError, InvalidArgumentError  # noqa: E402

X = torch.randn(2, 1, 32, 32)
ZOO_CORE = Path(zoo_core.__file__).parent


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = zoo_core.build_model("zoonet_s", num_classes=3, strategy="partial:1", in_chans=1,
                                 drop_rate=0.1, label_names=["cat", "dog", "eel"])
    with torch.no_grad():
        model.head.weight.add_(0.5)  # "trained": differs from the pretrained file
    return model.eval(), zoo_core.save_pretrained(model, tmp_path / "saved")


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


@pytest.mark.parametrize("spelling", ["path", "local-dir", "pathlike", "relative"])
def test_saved_folder_loads_back_the_same_model(saved, spelling, monkeypatch) -> None:
    model, folder = saved
    name = {"path": str(folder), "local-dir": f"local-dir:{folder}", "pathlike": folder,
            "relative": "./saved"}[spelling]
    monkeypatch.chdir(folder.parent)
    loaded = zoo_core.build_model(name)
    assert torch.equal(_logits(loaded), _logits(model))
    info = loaded.zoo
    assert info.label_names == ("cat", "dog", "eel") and info.num_classes == 3
    assert info.strategy == "partial:1" and info.head == "head"
    assert info.model_args == {"drop_rate": 0.1, "in_chans": 1}
    assert info.weights_tag == "local-dir" and info.base_model == f"local-dir:{folder}"
    assert info.extra["local_dir"] == str(folder) and info.dropped_head_keys == ()


def test_new_head_and_strategy_as_for_the_hub(saved) -> None:
    _, folder = saved
    probe = zoo_core.build_model(str(folder), num_classes=5)
    assert probe.zoo.strategy == "linear_probe" and probe.zoo.dropped_head_keys
    tuned = zoo_core.build_model(str(folder), strategy="finetune", drop_rate=0.3)
    assert tuned.zoo.strategy == "finetune" and tuned.zoo.model_args["drop_rate"] == 0.3
    assert tuned.head_drop.p == 0.3


def test_finetune_run_folder_means_its_best(saved, tmp_path) -> None:
    model, folder = saved
    run = tmp_path / "run"
    run.mkdir()
    folder.rename(run / "best")
    loaded = zoo_core.build_model(f"local-dir:{run}")
    assert torch.equal(_logits(loaded), _logits(model))
    assert loaded.zoo.base_model == f"local-dir:{run / 'best'}"


def test_registry_names_with_a_slash_still_resolve() -> None:
    assert zoo_core.build_model("zoonet/zoonet_s", num_classes=2,
                                strategy="linear_probe").zoo.name == "zoonet_s"


def test_bad_folders_are_clear(saved, tmp_path) -> None:
    _, folder = saved
    with pytest.raises(HubError, match="does not exist.*save_pretrained"):
        zoo_core.build_model(str(tmp_path / "missing"))
    for typo in ("runs/typo/best", "typo/"):  # a path, not "unknown plugin 'runs'"
        with pytest.raises(HubError, match="does not exist"):
            zoo_core.build_model(typo)
    with pytest.raises(HubError, match="is not a folder"):
        zoo_core.build_model(f"local-dir:{folder / 'config.json'}")
    with pytest.raises(InvalidArgumentError, match="names no folder"):
        zoo_core.build_model("local-dir:")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(HubError, match="no config.json.*pickled weights.*zoo convert"):
        zoo_core.build_model(str(empty))
    (folder / "model.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(HubError, match="has no model.safetensors"):
        zoo_core.build_model(str(folder))


def test_weights_not_matching_config_are_refused(saved, tmp_path) -> None:
    _, folder = saved
    other = zoo_core.build_model("zoonet_s", num_classes=3, strategy="finetune", in_chans=1)
    other_dir = zoo_core.save_pretrained(other, tmp_path / "other")
    (other_dir / "model.safetensors").replace(folder / "model.safetensors")
    with pytest.raises(HubError, match="do not belong together"):
        zoo_core.build_model(str(folder))


@pytest.mark.parametrize(("model_args", "words"), [
    ("in_chans=1", "must be an object"),
    ({"in_chans": 10**12}, "'in_chans'"),
    ({"__class__": 1}, "not a model argument name"),
    ({"checkpoint_path": "/etc/passwd"}, "not allowed"),
    ({"act_layer": "gelu"}, "not an argument zoo_core loads"),
])
def test_hostile_model_args_in_a_folder(saved, model_args, words) -> None:
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = model_args
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(HubError, match=words):
        zoo_core.build_model(str(folder))


def test_corrupt_config_is_clear(saved) -> None:
    _, folder = saved
    (folder / "config.json").write_text("[" * 10_000)
    with pytest.raises(HubError, match="cannot be read as JSON"):
        zoo_core.build_model(str(folder))


def _imports(path: Path) -> set[str]:
    """zoo_core modules imported by ``path``, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "zoo_core."):
            found.add(node.module.removeprefix("zoo_core."))
    return found


def test_loader_modules_form_no_import_cycle() -> None:
    modules = {".".join(p.relative_to(ZOO_CORE).with_suffix("").parts): _imports(p)
               for p in ZOO_CORE.rglob("_*.py") if p.name != "__init__.py"}
    assert "hub._hub" not in modules["build._builder"]
    assert "build._builder" not in modules["saved._pretrained"]

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in modules.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for name in ("build._builder", "saved._pretrained", "saved._sources", "hub._save",
                 "hub._card", "saved._repo_format", "layout._model_args",
                 "weights._adapt_weights"):
        assert name in modules, name
        assert name not in reach(name), f"{name} imports itself through a cycle"
    for name in ("hub._hub", "hub._save", "hub._card", "saved._sources", "saved._pretrained",
                 "saved._repo_format"):
        path = ZOO_CORE.joinpath(*name.split(".")).with_suffix(".py")
        assert len(path.read_text().splitlines()) <= 500


def test_a_real_finetune_run_loads_from_its_folder(tmp_path) -> None:
    from zoo_core.train import finetune

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained, res = finetune("zoonet_s", None, strategy="linear_probe", epochs=1,
                                per_class=2, out=tmp_path / "run", progress=False,
                                verbose=False)
    finally:
        torch.set_num_threads(before)
    for name in (tmp_path / "run", f"local-dir:{tmp_path / 'run' / 'best'}"):
        loaded = zoo_core.build_model(name)
        assert loaded.zoo.label_names == res.label_names
        assert loaded.zoo.strategy == "linear_probe"
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), trained.eval()(x))


def test_weights_argument_does_not_apply_to_a_saved_model(saved) -> None:
    _, folder = saved
    with pytest.raises(InvalidArgumentError, match="weights=None does not apply.*scratch"):
        zoo_core.build_model(folder, weights=None)
    scratch = zoo_core.build_model(folder, strategy="scratch")
    assert scratch.zoo.weights_source is None and scratch.zoo.model_args["in_chans"] == 1
