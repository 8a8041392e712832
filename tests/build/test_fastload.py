"""zoo_core.build._fastload: meta/mmap/assign build path vs the normal construct+copy path.

Same head: bitwise equal, storages, dtype, isolation. New head: test_fastload_heads.py;
key checks: test_fastload_key_checks.py. Models and archs: fastload_archs.py.
"""

from __future__ import annotations

import os
import sys

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

from fastload_archs import (  # noqa: E402
    ARCHS,
    BY_ID,
    FILE_CLASSES,
    TinyCNN,
    _assert_patches_restored,
    _logits,
    _no_meta,
    weights_fixture,  # noqa: F401  (the session fixture `weights`)
)
from torch import nn  # noqa: E402

from zoo_core.build._fastload import LoadReport, build_and_load  # noqa: E402

# ---------------------------------------------------------------- same num_classes: bitwise


@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_fast_path_matches_normal_path_bitwise(arch, weights):
    path = weights(arch.id)
    fast, rep = build_and_load(lambda: arch.make(FILE_CLASSES), path, head=arch.head)
    assert isinstance(rep, LoadReport)
    assert rep.fast_path is True, rep.fallback_reason
    assert rep.fallback_reason is None
    assert rep.dropped_head_keys == ()
    assert rep.weights_dtype == "float32"
    _no_meta(fast)
    _assert_patches_restored()

    normal, rep_n = build_and_load(
        lambda: arch.make(FILE_CLASSES), path, head=arch.head, fast=False
    )
    assert rep_n.fast_path is False and rep_n.fallback_reason
    file_sd = safetensors_torch.load_file(path)
    for k, v in fast.state_dict().items():
        assert torch.equal(v, file_sd[k]), k
    assert torch.equal(_logits(fast, arch.hw), _logits(normal, arch.hw))
    # requires_grad exactly as the architecture sets it
    rg_fast = {n: p.requires_grad for n, p in fast.named_parameters()}
    assert rg_fast == {n: p.requires_grad for n, p in normal.named_parameters()}
    # non-persistent buffers identical too
    nb = dict(normal.named_buffers())
    for n, b in fast.named_buffers():
        assert torch.equal(b, nb[n]), n


def test_requires_grad_preserved_on_frozen_param(weights):
    model, rep = build_and_load(lambda: TinyCNN(FILE_CLASSES), weights("tiny-cnn"), head="fc")
    assert rep.fast_path
    assert model.conv1.weight.requires_grad is False
    assert model.conv2.weight.requires_grad is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_fast_path_reads_the_file_into_aligned_storages_of_their_own(weights):
    path = os.path.realpath(weights("tiny-cnn"))
    model, rep = build_and_load(lambda: TinyCNN(FILE_CLASSES), path, head="fc")
    assert rep.fast_path
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.numel()]
    with open("/proc/self/maps") as f:
        assert not any(line.rstrip().endswith(path) for line in f)  # read, not mapped
    # one storage per tensor (torch.save / save_file refuse shared ones), each where
    # torch's allocator puts it
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == len(tensors)
    assert all(t.data_ptr() % 64 == 0 for t in tensors)


def test_file_the_reader_refuses_is_mapped_and_misaligned_tensors_copied(weights, monkeypatch):
    from zoo_core.build import _aligned_read

    monkeypatch.setattr(_aligned_read, "read_aligned", lambda path: None)
    arch = BY_ID["timm-convnext_atto"]
    path = weights(arch.id)
    assert any(v.data_ptr() % 64 for v in safetensors_torch.load_file(path).values())
    fast, rep = build_and_load(lambda: arch.make(FILE_CLASSES), path, head=arch.head)
    assert rep.fast_path
    assert all(t.data_ptr() % 64 == 0 for t in fast.state_dict().values() if t.numel())
    normal, _ = build_and_load(lambda: arch.make(FILE_CLASSES), path, head=arch.head, fast=False)
    assert torch.equal(_logits(fast, arch.hw), _logits(normal, arch.hw))


# ---------------------------------------------------------------- dtype


def test_fp16_file_gives_fp32_model(weights):
    arch = BY_ID["timm-resnet18"]
    path = weights(arch.id, "fp16")
    fast, rep = build_and_load(lambda: arch.make(FILE_CLASSES), path, head="fc")
    assert rep.fast_path and rep.weights_dtype == "float16"
    normal, rep_n = build_and_load(lambda: arch.make(FILE_CLASSES), path, head="fc", fast=False)
    assert rep_n.weights_dtype == "float16"
    file_sd = safetensors_torch.load_file(path)
    for k, v in fast.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
            assert torch.equal(v, file_sd[k].float()), k
    for p in fast.parameters():
        assert type(p) is nn.Parameter and p.dtype == torch.float32
    assert torch.equal(_logits(fast, arch.hw), _logits(normal, arch.hw))


# ---------------------------------------------------------------- isolation


def test_other_threads_are_not_affected_during_a_fast_build(weights):
    import threading

    seen = {}

    def other_thread() -> None:
        lin = nn.Linear(64, 32)
        seen["device"] = lin.weight.device.type
        seen["std"] = lin.weight.std().item()

    def construct() -> nn.Module:
        model = TinyCNN(FILE_CLASSES)
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        return model

    model, rep = build_and_load(construct, weights("tiny-cnn"), head="fc")
    assert rep.fast_path
    assert seen["device"] == "cpu" and seen["std"] > 0.01  # really initialised
    _assert_patches_restored()


def test_nested_build_falls_back_instead_of_breaking(weights):
    path = weights("tiny-cnn")

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner, _ = build_and_load(lambda: TinyCNN(FILE_CLASSES), path, head="fc")

    # An outer fast build whose construct() calls build_and_load: the outer falls back.
    outer_path = _tmp_outer_file(path)
    model, rep = build_and_load(Outer, outer_path, head="inner.fc")
    assert rep.fast_path is False and "inside a fast build" in rep.fallback_reason
    _no_meta(model)
    file_sd = safetensors_torch.load_file(path)
    for k, v in model.inner.state_dict().items():
        assert torch.equal(v, file_sd[k]), k
    _assert_patches_restored()


def _tmp_outer_file(path: str) -> str:
    out = path.replace(".safetensors", "-outer.safetensors")
    if not os.path.exists(out):
        sd = {f"inner.{k}": v.clone() for k, v in safetensors_torch.load_file(path).items()}
        safetensors_torch.save_file(sd, out)
    return out
