"""The fast path computes bit for bit what timm's and torchvision's own loaders compute.

Issue 19: tensors mapped from a safetensors file at an offset of 16 or 48 mod 64 made
oneDNN/MKL take other kernel paths, and logits differed from timm's loader in the last
float32 bits. Each architecture here gets a generated "pretrained" file (no download); the
reference is timm's own loader (``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))``) or, for torchvision, the architecture plus
``load_state_dict`` of the same file (what ``weights.get_state_dict`` feeds it). Logits are
compared with ``torch.equal`` at one torch thread and at several.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

from zoo_core.build._fastload import build_and_load  # noqa: E402

_SMALL_SWIN = dict(img_size=56, embed_dim=24, depths=(2, 2), num_heads=(1, 2))

# (id, timm name or "tv:<torchvision builder>", builder kwargs, head, input side)
ARCHS = [
    ("resnet18", "resnet18", {}, "fc", 32),
    ("convnext_atto", "convnext_atto", {}, "head.fc", 32),
    ("vit_tiny", "vit_tiny_patch16_224", {"img_size": 32}, "head", 32),
    ("efficientnet_b0", "efficientnet_b0", {}, "classifier", 32),
    ("mobilenetv3_small_100", "mobilenetv3_small_100", {}, "classifier", 32),
    ("regnetx_002", "regnetx_002", {}, "head.fc", 32),
    ("densenet121", "densenet121", {}, "classifier", 32),
    ("swin", "swin_tiny_patch4_window7_224", _SMALL_SWIN, "head.fc", 56),
    ("tv-resnet18", "tv:resnet18", {}, "fc", 32),
    ("tv-mobilenet_v3_small", "tv:mobilenet_v3_small", {}, "classifier", 32),
    ("tv-regnet_x_400mf", "tv:regnet_x_400mf", {}, "fc", 32),
    ("tv-densenet121", "tv:densenet121", {}, "classifier", 32),
]
# bench_build's larger architectures: same check, slower (a 100-330 MB file each)
SLOW_ARCHS = [
    ("resnet50", "resnet50", {}, "fc", 32),
    ("convnext_tiny", "convnext_tiny", {}, "head.fc", 32),
    ("vit_base", "vit_base_patch16_224", {"img_size": 32}, "head", 32),
    ("tv-resnet50", "tv:resnet50", {}, "fc", 32),
]


def _construct(name: str, kwargs: dict):
    if name.startswith("tv:"):
        return getattr(torchvision.models, name[3:])(**kwargs)
    return timm.create_model(name, **kwargs)


def _reference(name: str, kwargs: dict, path: str):
    """The library's own loader (torchvision: the architecture + load_state_dict)."""
    if name.startswith("tv:"):
        model = _construct(name, kwargs)
        model.load_state_dict(safetensors_torch.load_file(path))
        return model
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **kwargs
    )


def _write_file(name: str, kwargs: dict, path: str) -> None:
    """A state_dict nudged away from the init (an unloaded tensor cannot pass)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    sd = {}
    for k, v in _construct(name, kwargs).state_dict().items():
        v = v.detach().clone().contiguous()
        if v.is_floating_point():
            noise = torch.randn(v.shape, generator=g) * 0.01
            v = v.abs() + 0.01 if "running_var" in k else v + noise
        sd[k] = v.contiguous()
    safetensors_torch.save_file(sd, path)


def _logits(model, hw: int, threads: int):
    x = torch.randn(2, 3, hw, hw, generator=torch.Generator().manual_seed(7))
    model.eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return model(x)
    finally:
        torch.set_num_threads(before)


def _check(case, tmp_path) -> None:
    _id, name, kwargs, head, hw = case
    path = str(tmp_path / f"{_id}.safetensors")
    _write_file(name, kwargs, path)
    ours, report = build_and_load(lambda: _construct(name, kwargs), path, head=head)
    assert report.fast_path, report.fallback_reason
    reference = _reference(name, kwargs, path)
    for t in list(ours.parameters()) + list(ours.buffers()):
        assert t.numel() == 0 or t.data_ptr() % 64 == 0
    many = max(2, os.cpu_count() or 2)
    for threads in (1, many):
        a, b = _logits(ours, hw, threads), _logits(reference, hw, threads)
        assert torch.equal(a, b), (threads, (a - b).abs().max().item())


@pytest.mark.parametrize("case", ARCHS, ids=[c[0] for c in ARCHS])
def test_fast_path_logits_equal_the_libraries_own_loader(case, tmp_path):
    _check(case, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_ARCHS, ids=[c[0] for c in SLOW_ARCHS])
def test_fast_path_logits_equal_on_bench_build_archs(case, tmp_path):
    _check(case, tmp_path)


def test_the_old_misalignment_is_what_is_fixed(tmp_path):
    """mobilenetv3_small's file leaves tensors off 64-byte alignment (the bug's trigger)."""
    path = str(tmp_path / "m.safetensors")
    _write_file("mobilenetv3_small_100", {}, path)
    mapped = safetensors_torch.load_file(path)
    assert any(v.data_ptr() % 64 for v in mapped.values())
    ours, _ = build_and_load(lambda: timm.create_model("mobilenetv3_small_100"), path,
                             head="classifier")
    assert all(t.data_ptr() % 64 == 0 for t in ours.state_dict().values() if t.numel())
