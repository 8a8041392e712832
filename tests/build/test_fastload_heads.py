"""zoo_core.build._fastload: a new head (num_classes differs) is initialised like the
architecture would, replayed where it can be, and falls back to the normal path otherwise.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

from fastload_archs import (  # noqa: E402
    ARCHS,
    NEW_CLASSES,
    TinyBoundTruncNormalHead,
    TinyBufferFromParam,
    TinyCNN,
    TinyDataAssignHead,
    TinyOutHead,
    TinyScaledHead,
    TinyViewInitHead,
    _assert_patches_restored,
    _logits,
    _no_meta,
    weights_fixture,  # noqa: F401  (the session fixture `weights`)
)
from torch import nn  # noqa: E402

from zoo_core.build._fastload import build_and_load  # noqa: E402

# ---------------------------------------------------------------- new head (num_classes differs)


@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_head_swap_initialised_like_the_architecture(arch, weights):
    path = weights(arch.id)
    torch.manual_seed(3)
    fast, rep = build_and_load(lambda: arch.make(NEW_CLASSES), path, head=arch.head)
    assert rep.fast_path is True, rep.fallback_reason
    prefix = arch.head + "."
    file_keys = safetensors_torch.load_file(path).keys()
    head_file_keys = {k for k in file_keys if k.startswith(prefix)}
    assert set(rep.dropped_head_keys) == head_file_keys
    _no_meta(fast)
    torch.manual_seed(3)
    normal, rep_n = build_and_load(lambda: arch.make(NEW_CLASSES), path, head=arch.head, fast=False)
    assert rep_n.dropped_head_keys == rep.dropped_head_keys

    head_f = dict(fast.get_submodule(arch.head).named_parameters())
    head_n = dict(normal.get_submodule(arch.head).named_parameters())
    assert head_f.keys() == head_n.keys()
    for n, p in head_f.items():
        q = head_n[n]
        assert p.shape == q.shape and p.dtype == q.dtype, n
        assert p.requires_grad == q.requires_grad, n
        assert torch.isfinite(p).all(), n
        if not q.any():  # the architecture zeroes it (timm zeroes most head biases)
            assert not p.any(), n
        elif p.numel() >= 1000:  # same init distribution, not the same draws
            ratio = (p.std() / q.std()).item()
            assert 1 / 1.5 < ratio < 1.5, (n, ratio)
            assert abs(p.abs().max().item() / q.abs().max().item() - 1) < 0.5, n
    # the backbone is exactly the file
    file_sd = safetensors_torch.load_file(path)
    for k, v in fast.state_dict().items():
        if not k.startswith(prefix):
            assert torch.equal(v, file_sd[k]), k
    out = _logits(fast, arch.hw)
    assert out.shape == (2, NEW_CLASSES) and torch.isfinite(out).all()


def test_efficientnet_head_init_is_not_linear_default(weights):
    """efficientnet_b0 initialises its head with a std ~11x below nn.Linear's default."""
    model, rep = build_and_load(
        lambda: timm.create_model("efficientnet_b0", num_classes=NEW_CLASSES),
        weights("timm-efficientnet_b0"),
        head="classifier",
    )
    assert rep.fast_path
    w = model.classifier.weight
    bound = 1.0 / w.shape[0] ** 0.5  # timm _init_weight_goog: U(-1/sqrt(fan_out), ...)
    assert w.abs().max().item() <= bound + 1e-6
    assert abs(w.std().item() / (bound / 3**0.5) - 1) < 0.1
    linear_default_std = 1.0 / (3 * w.shape[1]) ** 0.5
    assert w.std().item() > 5 * linear_default_std
    assert not model.classifier.bias.any()


def test_head_created_from_real_values_is_replayed(weights):
    path = weights("tiny-scaled-head")
    model, rep = build_and_load(lambda: TinyScaledHead(NEW_CLASSES), path, head="fc")
    assert rep.fast_path, rep.fallback_reason
    assert set(rep.dropped_head_keys) == {"fc.weight", "fc.bias", "fc.gain"}
    assert torch.equal(model.fc.gain, torch.full((NEW_CLASSES,), 0.5))
    assert not model.fc.bias.any()
    assert 0.03 < model.fc.weight.std().item() < 0.08
    _no_meta(model)


def test_data_assignment_is_replayed(weights):
    model, rep = build_and_load(
        lambda: TinyDataAssignHead(NEW_CLASSES), weights("tiny-cnn"), head="fc"
    )
    assert rep.fast_path, rep.fallback_reason
    assert torch.equal(model.fc.weight, torch.full((NEW_CLASSES, 16), 0.125))


@pytest.mark.parametrize(
    ("cls", "why"),
    [
        (TinyViewInitHead, "view"),
        (TinyBoundTruncNormalHead, "is_meta"),
        (TinyBufferFromParam, "w0"),
        (TinyOutHead, ""),  # out= on meta: tainted, or the cpu->meta write raises
    ],
)
def test_unreplayable_cases_fall_back_to_normal_path(cls, why, weights):
    path = weights("tiny-cnn")
    model, rep = build_and_load(lambda: cls(NEW_CLASSES), path, head="fc")
    assert rep.fast_path is False
    assert why in rep.fallback_reason
    _no_meta(model)
    _assert_patches_restored()
    if cls is TinyViewInitHead:
        assert torch.equal(model.fc.weight[:, :4], torch.full((NEW_CLASSES, 4), 0.25))
    if cls is TinyBoundTruncNormalHead:
        assert 0.01 < model.fc.weight.std().item() < 0.03  # trunc_normal_(std=.02) ran
    if cls is TinyOutHead:
        assert torch.equal(model.fc.weight, torch.full((NEW_CLASSES, 16), 0.5))


def test_construct_error_propagates_and_patches_are_restored(weights):
    def boom() -> nn.Module:
        TinyCNN(3)
        raise RuntimeError("bad architecture")

    with pytest.raises(RuntimeError, match="bad architecture"):
        build_and_load(boom, weights("tiny-cnn"), head="fc")
    _assert_patches_restored()
