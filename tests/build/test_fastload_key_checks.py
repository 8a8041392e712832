"""zoo_core.build._fastload: file keys and shapes that do not fit the model -> WeightsError,
on the fast path and the normal one alike.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

from fastload_archs import (  # noqa: E402
    BY_ID,
    FILE_CLASSES,
    NEW_CLASSES,
    TinyCNN,
    _assert_patches_restored,
    _no_meta,
    weights_fixture,  # noqa: F401  (the session fixture `weights`)
)
from torch import nn  # noqa: E402

from zoo_core.build._fastload import build_and_load  # noqa: E402
from zoo_core.errors import WeightsError  # noqa: E402

# ---------------------------------------------------------------- key checks -> WeightsError


def _rewrite(path: str, tmp_path, fn) -> str:
    sd = {k: v.clone() for k, v in safetensors_torch.load_file(path).items()}
    out = str(tmp_path / "edited.safetensors")
    safetensors_torch.save_file(fn(sd), out)
    return out


@pytest.mark.parametrize("fast", [True, False])
def test_module_prefixed_file_is_an_error(fast, weights, tmp_path):
    bad = _rewrite(
        weights("tiny-cnn"), tmp_path, lambda sd: {f"module.{k}": v for k, v in sd.items()}
    )
    with pytest.raises(WeightsError) as ei:
        build_and_load(
            lambda: TinyCNN(FILE_CLASSES), bad, head="fc", fast=fast, source_name="tiny@v1"
        )
    msg = str(ei.value)
    assert "tiny@v1" in msg
    assert "missing keys" in msg and "unexpected keys" in msg
    assert "module.bn1.bias" in msg and "'module.'" in msg
    _assert_patches_restored()


def test_module_prefixed_file_lists_at_most_ten_keys(weights, tmp_path):
    arch = BY_ID["timm-resnet18"]
    bad = _rewrite(weights(arch.id), tmp_path, lambda sd: {f"module.{k}": v for k, v in sd.items()})
    with pytest.raises(WeightsError, match=r"\(\+\d+ more\)"):
        build_and_load(lambda: arch.make(FILE_CLASSES), bad, head="fc")


@pytest.mark.parametrize("fast", [True, False])
def test_unexpected_extra_key_is_an_error(fast, weights, tmp_path):
    def add(sd):
        sd["extra.weight"] = torch.zeros(3)
        return sd

    bad = _rewrite(weights("tiny-cnn"), tmp_path, add)
    with pytest.raises(WeightsError, match=r"unexpected keys \(1: extra\.weight\)"):
        build_and_load(lambda: TinyCNN(FILE_CLASSES), bad, head="fc", fast=fast)


@pytest.mark.parametrize("fast", [True, False])
def test_missing_backbone_key_is_an_error(fast, weights, tmp_path):
    def drop(sd):
        del sd["bn2.running_mean"]
        return sd

    bad = _rewrite(weights("tiny-cnn"), tmp_path, drop)
    with pytest.raises(WeightsError, match=r"missing keys \(1: bn2\.running_mean\)"):
        build_and_load(lambda: TinyCNN(NEW_CLASSES), bad, head="fc", fast=fast)


@pytest.mark.parametrize("fast", [True, False])
def test_backbone_shape_mismatch_is_an_error(fast, weights):
    path = weights("tiny-cnn")

    class Wider(TinyCNN):
        def __init__(self, n):
            super().__init__(n)
            self.conv2 = nn.Conv2d(8, 16, 5, stride=2, padding=2)

    with pytest.raises(WeightsError, match="conv2.weight"):
        build_and_load(lambda: Wider(FILE_CLASSES), path, head="fc", fast=fast)


@pytest.mark.parametrize("fast", [True, False])
def test_missing_and_corrupt_files(fast, tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        build_and_load(lambda: TinyCNN(3), tmp_path / "nope.safetensors", head="fc", fast=fast)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(WeightsError, match="corrupt"):
        build_and_load(lambda: TinyCNN(3), junk, head="fc", fast=fast)


def test_fast_false_reports_normal_path(weights):
    model, rep = build_and_load(
        lambda: TinyCNN(NEW_CLASSES), weights("tiny-cnn"), head="fc", fast=False
    )
    assert rep.fast_path is False and rep.fallback_reason == "fast=False"
    assert set(rep.dropped_head_keys) == {"fc.weight", "fc.bias"}
    assert rep.seconds > 0
    _no_meta(model)
