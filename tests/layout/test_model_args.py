"""build_model(..., **model_kwargs): passed to builders like timm.create_model, recorded,
adapted pretrained weights (in_chans, img_size), clear errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

import zoo_core  # noqa: E402
from zoo_core._specs import DataConfig  # noqa: E402
from zoo_core.errors import HubError, InvalidArgumentError, SpecError  # noqa: E402
from zoo_core.layout._model_args import adapt_data_config, args_from_config  # noqa: E402


def _timm_file(tmp_path: Path, arch: str, **kwargs: object) -> Path:
    torch.manual_seed(0)
    model = timm.create_model(arch, **kwargs)
    path = tmp_path / f"{arch}.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(path))
    return path


@pytest.mark.parametrize("fast", [True, False])
def test_in_chans_matches_timm_pretrained_bitwise(tmp_path: Path, fast: bool) -> None:
    path = _timm_file(tmp_path, "test_resnet")
    ours = zoo_core.build_model("test_resnet", num_classes=1000, strategy="finetune",
                                weights=path, in_chans=1, fast=fast).eval()
    theirs = timm.create_model("test_resnet", pretrained=True, in_chans=1,
                               pretrained_cfg_overlay={"file": str(path)}).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    assert ours.zoo.model_args == {"in_chans": 1}
    assert ours.zoo.data_config.input_size[0] == 1 and len(ours.zoo.data_config.mean) == 1
    assert ours.zoo.extra["load"] == ("fast path" if fast else "normal path (fast=False)")


def test_img_size_resamples_pos_embed_like_timm(tmp_path: Path) -> None:
    path = _timm_file(tmp_path, "test_vit", num_classes=10)
    ours = zoo_core.build_model("test_vit", num_classes=10, strategy="finetune", weights=path,
                                img_size=64, in_chans=1).eval()
    theirs = timm.create_model("test_vit", pretrained=True, num_classes=10, img_size=64,
                               in_chans=1, pretrained_cfg_overlay={
                                   "file": str(path), "num_classes": 10}).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    assert ours.zoo.data_config.input_size == (1, 64, 64)
    assert ours.zoo.extra["load"] == "fast path"


def test_drop_rates_and_global_pool_reach_the_model() -> None:
    model = zoo_core.build_model("test_resnet", num_classes=4, strategy="scratch",
                                 drop_rate=0.25, drop_path_rate=0.1, global_pool="max")
    assert model.drop_rate == 0.25
    assert model.global_pool.pool_type == "max"
    assert model.zoo.model_args == {"drop_path_rate": 0.1, "drop_rate": 0.25,
                                    "global_pool": "max"}


def test_zoonet_in_chans_adapts_pretrained_stem() -> None:
    from timm.models import adapt_input_conv

    base = zoo_core.build_model("zoonet_s", num_classes=3, strategy="finetune")
    gray = zoo_core.build_model("zoonet_s", num_classes=3, strategy="finetune", in_chans=1,
                                drop_rate=0.1)
    expected = adapt_input_conv(1, base.stem[0].weight.detach(), base_chans=3)
    assert torch.equal(gray.stem[0].weight, expected)
    assert torch.equal(gray.stages[0][0][0].weight, base.stages[0][0][0].weight)
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert gray.head_drop.p == 0.1


def test_torchvision_in_chans_with_weights(tmp_path: Path) -> None:
    import torchvision
    from timm.models import adapt_input_conv

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=10)
    path = tmp_path / "tv.safetensors"
    safetensors_torch.save_file(ref.state_dict(), str(path))
    model = zoo_core.build_model("torchvision/resnet18", num_classes=10, strategy="finetune",
                                 weights=path, in_chans=1)
    assert torch.equal(model.conv1.weight, adapt_input_conv(1, ref.conv1.weight.detach()))
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)


def test_rejected_kwarg_names_model_plugin_and_kwarg() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        zoo_core.build_model("zoonet_s", num_classes=3, strategy="scratch", bogus_option=1)
    text = str(info.value)
    assert "'zoonet_s'" in text and "'zoonet'" in text and "bogus_option=1" in text
    assert not isinstance(info.value, SpecError)
    with pytest.raises(InvalidArgumentError, match="'timm'.*global_pool='nope'"):
        zoo_core.build_model("test_resnet", num_classes=3, strategy="scratch",
                             global_pool="nope")
    with pytest.raises(InvalidArgumentError, match="'torchvision'.*drop_rate=0.5"):
        zoo_core.build_model("torchvision/resnet18", num_classes=3, strategy="scratch",
                             drop_rate=0.5)  # torchvision has no drop_rate


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"pretrained": True}, "weights="),
    ({"checkpoint_path": "x.pth"}, "weights="),
    ({"model_name": "resnet50"}, "first argument"),
    ({"_private": 1}, "starts with '_'"),
    ({"in_chans": 0}, "from 1 to 64"),
    ({"in_chans": 10**9}, "from 1 to 64"),
    ({"in_chans": True}, "from 1 to 64"),
    ({"drop_rate": 1.5}, "dropout probability"),
    ({"drop_rate": float("nan")}, "dropout probability"),
    ({"img_size": 10**7}, "8192"),
    ({"img_size": [64, 64, 64]}, "height, width"),
    ({"global_pool": "avg; rm -rf"}, "pooling name"),
    ({"global_pool": ""}, "no pooling.*feature map"),
    ({"act_layer": object()}, "plain JSON value"),
    ({"widths": [[1]]}, "plain JSON value"),
    ({"name_tag": "x" * 1000}, "plain JSON value"),
])
def test_bad_caller_kwargs_are_clear(kwargs: dict, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words.replace("(", r"\(")):
        zoo_core.build_model("zoonet_s", num_classes=3, strategy="scratch", **kwargs)


def test_plugin_builder_kwargs_cannot_be_overridden() -> None:
    with pytest.raises(InvalidArgumentError, match="first argument"):
        zoo_core.build_model("test_resnet", num_classes=3, strategy="scratch",
                             model_name="resnet50")


@pytest.mark.parametrize(("args", "words"), [
    ([1, 2], "must be an object"),
    ("in_chans=1", "must be an object"),
    ({"in_chans": "1"}, "'in_chans'='1' must be an integer"),
    ({"in_chans": 10**12}, "from 1 to 64"),
    ({"img_size": 1e308}, "img_size"),
    ({"drop_rate": -1}, "drop_rate"),
    ({"act_layer": "gelu"}, "'act_layer' is not an argument zoo_core loads"),
    ({"_secret": 1}, "'_secret' is not a model argument name"),
    ({"pretrained": True}, "'pretrained' is not allowed"),
    ({"checkpoint_path": "/etc/passwd"}, "'checkpoint_path' is not allowed"),
    ({f"k{i}": 1 for i in range(100)}, "at most 32"),
])
def test_hostile_config_model_args(args: object, words: str) -> None:
    with pytest.raises(HubError, match=words):
        args_from_config(args, "hf-hub:org/bad")


def test_config_model_args_reports_every_bad_key() -> None:
    with pytest.raises(HubError) as info:
        args_from_config({"in_chans": -1, "evil": 1, "drop_rate": 0.1}, "hf-hub:org/bad")
    assert "'in_chans'" in str(info.value) and "'evil'" in str(info.value)
    assert "'drop_rate'" not in str(info.value)
    assert args_from_config({"img_size": [32, 48], "in_chans": 1, "num_classes": 5}, "x") == {
        "img_size": [32, 48], "in_chans": 1}


def test_adapt_data_config_channels_and_size() -> None:
    dc = DataConfig(input_size=(3, 224, 224))
    assert adapt_data_config(dc, {}) is dc
    four = adapt_data_config(dc, {"in_chans": 4, "img_size": [96, 128]})
    assert four.input_size == (4, 96, 128) and len(four.mean) == len(four.std) == 4


def test_model_args_round_trip_through_the_hub(hub_env, tmp_path: Path) -> None:
    """Pushed config.json carries model_args: zoo_core and plain timm rebuild the same."""
    from zoo_core.hub._hub import push_to_hub

    path = _timm_file(tmp_path, "test_vit")
    ours = zoo_core.build_model("test_vit", num_classes=4, strategy="finetune", weights=path,
                                in_chans=1, img_size=64, drop_rate=0.1).eval()
    repo = hub_env.repo_id("kwargs-vit")
    push_to_hub(ours, repo)
    config = json.loads(hub_env.server.files(repo)["config.json"])
    assert config["model_args"]["in_chans"] == 1 and config["model_args"]["img_size"] == 64
    assert config["model_args"]["drop_rate"] == 0.1
    assert config["pretrained_cfg"]["input_size"] == [1, 64, 64]
    assert "`in_chans=1`" in hub_env.server.files(repo)["README.md"].decode()
    x = torch.randn(2, 1, 64, 64)
    back = zoo_core.build_model(f"hf-hub:{repo}").eval()
    plain = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(back(x), ours(x)) and torch.equal(plain(x), ours(x))
    assert back.zoo.model_args["in_chans"] == 1 and back.zoo.model_args["img_size"] == 64


def test_kwarg_that_changes_other_layers_says_so(tmp_path: Path) -> None:
    from zoo_core.errors import WeightsError

    path = _timm_file(tmp_path, "test_vit")
    with pytest.raises(WeightsError, match="fc_norm.*global_pool='avg'.*in_chans.*img_size"):
        zoo_core.build_model("test_vit", num_classes=3, strategy="finetune", weights=path,
                             global_pool="avg")


@pytest.mark.parametrize(("model_args", "words"), [
    ({"in_chans": 10**9}, "'in_chans'=1000000000 must be an integer from 1 to 64"),
    ({"img_size": [10**6, 10**6]}, "'img_size'"),
    ({"pretrained_cfg_overlay": {"file": "/etc/passwd"}}, "'pretrained_cfg_overlay' is not"),
    ({"__init__": 1, "act_layer": "x"}, "'__init__'.*'act_layer'"),
    ([["in_chans", 1]], "must be an object"),
])
def test_hostile_model_args_in_a_hub_repo(hub_env, tmp_path: Path, model_args, words) -> None:
    from huggingface_hub import CommitOperationAdd

    model = zoo_core.build_model("zoonet_s", 3, "finetune")
    folder = zoo_core.save_pretrained(model, tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = model_args
    repo = hub_env.repo_id("hostile-args")
    hub_env.api.create_repo(repo)
    hub_env.api.create_commit(repo, [
        CommitOperationAdd("config.json", json.dumps(config).encode()),
        CommitOperationAdd("model.safetensors", (folder / "model.safetensors").read_bytes()),
    ], commit_message="hostile")
    with pytest.raises(HubError, match=words):
        zoo_core.build_model(f"hf-hub:{repo}")


def test_caller_kwargs_override_saved_ones(tmp_path: Path) -> None:
    gray = zoo_core.build_model("zoonet_s", 3, "finetune", in_chans=1)
    folder = zoo_core.save_pretrained(gray, tmp_path / "gray")
    rgb = zoo_core.build_model(str(folder), in_chans=3)  # 1 -> 3 channels, timm's way
    assert rgb.stem[0].weight.shape[1] == 3 and rgb.zoo.model_args == {"in_chans": 3}
    assert rgb.zoo.data_config.input_size[0] == 3 and len(rgb.zoo.data_config.mean) == 3
    assert rgb(torch.randn(1, 3, 32, 32)).shape == (1, 3)
