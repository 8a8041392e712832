"""transformers as a real client of what zoo_core saves and pushes.

A timm-architecture model loads with ``AutoModelForImageClassification`` and
``pipeline("image-classification")`` (transformers' TimmWrapper) from the local Hub and from
a folder, with our logits bitwise and our labels as ``id2label``. That needs config.json's
``model_args`` to hold only the caller's arguments: TimmWrapper passes ``num_classes`` itself
and failed on timm's recorded copy ("multiple values for keyword argument"). A zoonet or
torchvision architecture is not timm's: its config says how to load it, and transformers'
error names zoo_core instead of advising to upgrade timm.
"""

from __future__ import annotations

import json

import pytest
import torch

import zoo_core

transformers = pytest.importorskip("transformers")

LABELS = ("cat", "dog", "bird", "fish")


def _timm_model(**model_args) -> torch.nn.Module:
    model = zoo_core.build_model("timm/test_resnet", 4, "scratch", label_names=LABELS,
                                 **model_args)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a head that is not the init's
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=g))
    return model.eval()


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(pixel_values=x) if hasattr(model, "config") else model(x)
    return getattr(out, "logits", out)


def _image():
    from PIL import Image

    g = torch.Generator().manual_seed(1)
    pixels = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def _check_pipeline(where: str, ours: torch.nn.Module) -> None:
    classify = transformers.pipeline("image-classification", model=where, device="cpu")
    image = _image()
    got = classify(image, top_k=4)
    assert {row["label"] for row in got} == set(LABELS)
    # the same preprocessed pixels through our model give the pipeline's scores
    pixels = classify.image_processor(image, return_tensors="pt")["pixel_values"]
    probs = _logits(ours, pixels).softmax(-1)[0]
    for row in got:
        assert row["score"] == pytest.approx(float(probs[LABELS.index(row["label"])]),
                                             abs=1e-6)


def test_pushed_timm_model_loads_with_transformers(hub_env) -> None:
    ours = _timm_model()
    repo = hub_env.repo_id("tf-timm")
    zoo_core.push_to_hub(ours, repo)
    config = json.loads(hub_env.server.files(repo)["config.json"])
    assert "model_args" not in config and "model_type" not in config

    theirs = transformers.AutoModelForImageClassification.from_pretrained(repo).eval()
    assert type(theirs).__name__ == "TimmWrapperForImageClassification"
    assert theirs.config.id2label == dict(enumerate(LABELS))
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    assert torch.equal(_logits(theirs, x), _logits(ours, x))
    _check_pipeline(repo, ours)
    card = hub_env.server.files(repo)["README.md"].decode()
    assert f'pipeline("image-classification", model="{repo}")' in card


def test_saved_folder_loads_with_transformers(tmp_path) -> None:
    ours = _timm_model()
    folder = zoo_core.save_pretrained(ours, tmp_path / "saved")
    theirs = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    assert torch.equal(_logits(theirs, x), _logits(ours, x))
    assert theirs.config.id2label == dict(enumerate(LABELS))
    _check_pipeline(str(folder), ours)


def test_model_args_hold_only_the_callers_and_every_loader_rebuilds_the_same(tmp_path):
    import timm

    ours = _timm_model(in_chans=1, drop_rate=0.1)
    folder = zoo_core.save_pretrained(ours, tmp_path / "gray")
    config = json.loads((folder / "config.json").read_text())
    # not num_classes, global_pool (timm's defaults) nor anything zoo_core filled in
    assert config["model_args"] == {"drop_rate": 0.1, "in_chans": 1}
    assert config["num_classes"] == 4 and config["pretrained_cfg"]["input_size"][0] == 1

    x = torch.randn(2, 1, 40, 40, generator=torch.Generator().manual_seed(4))
    back = zoo_core.build_model(str(folder)).eval()
    assert back.zoo.model_args == {"drop_rate": 0.1, "in_chans": 1}
    assert back.zoo.label_names == LABELS
    plain = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    theirs = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    for who, other in (("zoo_core", back), ("timm", plain), ("transformers", theirs)):
        assert torch.equal(_logits(other, x), _logits(ours, x)), who


@pytest.mark.parametrize(("arch", "size"), [
    ("zoonet_s", 32), ("torchvision/mobilenet_v3_small", 64)])
def test_other_architectures_say_how_to_load_them(hub_env, arch: str, size: int) -> None:
    model = zoo_core.build_model(arch, 3, "scratch", label_names=("a", "b", "c")).eval()
    repo = hub_env.repo_id("tf-other")
    zoo_core.push_to_hub(model, repo)
    config = json.loads(hub_env.server.files(repo)["config.json"])
    assert config["model_type"] == "zoo_core"
    assert f'zoo_core.build_model("hf-hub:{repo}")' in config["zoo_core"]["how_to_load"]
    card = hub_env.server.files(repo)["README.md"].decode()
    assert f'zoo_core.build_model("hf-hub:{repo}")' in card
    assert "not of timm or transformers" in card

    for load in (lambda: transformers.AutoModelForImageClassification.from_pretrained(repo),
                 lambda: transformers.pipeline("image-classification", model=repo)):
        with pytest.raises(ValueError) as info:
            load()
        assert "`zoo_core`" in str(info.value) and "timm" not in str(info.value)

    back = zoo_core.build_model(f"hf-hub:{repo}").eval()  # ours still reads it
    x = torch.randn(1, 3, size, size)
    torch.testing.assert_close(_logits(back, x), _logits(model, x), rtol=1e-5, atol=1e-7)
