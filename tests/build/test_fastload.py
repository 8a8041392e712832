"""zoo_core.build._fastload: meta/mmap/assign build path vs the normal construct+copy path."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

from torch import nn  # noqa: E402
from torch.nn.init import trunc_normal_ as _bound_torch_trunc_normal_  # noqa: E402

from zoo_core.build._fastload import LoadReport, build_and_load  # noqa: E402
from zoo_core.errors import WeightsError  # noqa: E402
from zoo_core.layout import _meta_build  # noqa: E402

FILE_CLASSES = 1000
NEW_CLASSES = 7


# ---------------------------------------------------------------- small hand-written models


class TinyCNN(nn.Module):
    """Conv + BatchNorm; freezes one parameter and carries a non-persistent buffer."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)
        self.conv1.weight.requires_grad_(False)  # the architecture freezes its stem
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 16), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = x.mean((2, 3)) * self.scale
        return self.fc(x)


class ScaledHead(nn.Module):
    """A head whose parameters are created from real values (no init op recorded)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.05)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.gain = nn.Parameter(torch.full((num_classes,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.t() + self.bias) * self.gain


class TinyScaledHead(TinyCNN):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.fc = ScaledHead(16, num_classes)


class TinyViewInitHead(TinyCNN):
    """Head initialised through a view: cannot be replayed -> normal path."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        with torch.no_grad():
            self.fc.weight[:, :4].fill_(0.25)


class TinyBoundTruncNormalHead(TinyCNN):
    """torch.nn.init.trunc_normal_ imported by name returns early on meta -> normal path."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        _bound_torch_trunc_normal_(self.fc.weight, std=0.02)


class TinyDataAssignHead(TinyCNN):
    """``param.data = real_tensor``: replayed as an assignment."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.fc.weight.data = torch.full((num_classes, 16), 0.125)


class TinyOutHead(TinyCNN):
    """A head written through ``out=``: not replayable -> normal path."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        torch.mul(torch.ones(num_classes, 16), 0.5, out=self.fc.weight.data)


class TinyBufferFromParam(TinyCNN):
    """A non-persistent buffer computed from a parameter would be meta -> normal path."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.register_buffer("w0", self.conv2.weight.detach().clone(), persistent=False)


# ---------------------------------------------------------------- architectures under test


class Arch:
    def __init__(self, id_: str, make: Callable[[int], nn.Module], head: str, hw: int) -> None:
        self.id, self.make, self.head, self.hw = id_, make, head, hw

    def __repr__(self) -> str:
        return self.id


def _timm(name: str, **kw):
    return lambda n: timm.create_model(name, num_classes=n, **kw)


# Small swin configs keep the real classes (shifted windows, attention masks, relative
# position index buffers) at a fraction of swin_tiny's cost: 56px input, two stages, the
# first one shifted (its attn_mask is a non-persistent buffer computed from a param's device).
_SMALL_SWIN = dict(img_size=56, embed_dim=24, depths=(2, 2), num_heads=(1, 2))

ARCHS = [
    Arch("timm-resnet18", _timm("resnet18"), "fc", 32),
    Arch("timm-convnext_atto", _timm("convnext_atto"), "head.fc", 32),
    Arch("timm-vit_tiny", _timm("vit_tiny_patch16_224", img_size=32), "head", 32),
    Arch("timm-swin", _timm("swin_tiny_patch4_window7_224", **_SMALL_SWIN), "head.fc", 56),
    Arch("timm-efficientnet_b0", _timm("efficientnet_b0"), "classifier", 32),
    Arch("tv-resnet18", lambda n: torchvision.models.resnet18(num_classes=n), "fc", 32),
    Arch(
        "tv-swin",
        lambda n: torchvision.models.SwinTransformer(
            patch_size=[4, 4],
            embed_dim=24,
            depths=[2, 2],
            num_heads=[1, 2],
            window_size=[7, 7],
            num_classes=n,
        ),
        "head",
        56,
    ),
    Arch("tiny-cnn", lambda n: TinyCNN(n), "fc", 16),
]
BY_ID = {a.id: a for a in ARCHS}
BY_ID["tiny-scaled-head"] = Arch("tiny-scaled-head", lambda n: TinyScaledHead(n), "fc", 16)


def _state_for_file(model: nn.Module, dtype: torch.dtype | None = None) -> dict:
    """state_dict with every float tensor nudged (so an unloaded tensor cannot pass)."""
    g = torch.Generator().manual_seed(1234)
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone().contiguous()  # clone: no shared storage in the file
        if v.is_floating_point():
            noise = torch.randn(v.shape, generator=g) * 0.01
            v = (v.abs() + 0.01 if "running_var" in k else v + noise).contiguous()
            if dtype is not None:
                v = v.to(dtype)
        out[k] = v
    return out


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    cache: dict[tuple[str, str], str] = {}
    root = tmp_path_factory.mktemp("weights")

    def get(arch_id: str, variant: str = "fp32") -> str:
        key = (arch_id, variant)
        if key not in cache:
            arch = BY_ID[arch_id]
            torch.manual_seed(0)
            sd = _state_for_file(
                arch.make(FILE_CLASSES), torch.float16 if variant == "fp16" else None
            )
            path = str(root / f"{arch_id}-{variant}.safetensors")
            safetensors_torch.save_file(sd, path)
            cache[key] = path
        return cache[key]

    return get


def _no_meta(model: nn.Module) -> None:
    for n, p in model.named_parameters():
        assert not p.is_meta, n
        assert type(p) is nn.Parameter, n
    for n, b in model.named_buffers():
        assert not b.is_meta, n


def _logits(model: nn.Module, hw: int) -> torch.Tensor:
    x = torch.randn(2, 3, hw, hw, generator=torch.Generator().manual_seed(7))
    model.eval()
    with torch.no_grad():
        return model(x)


def _assert_patches_restored() -> None:
    assert nn.Module.register_parameter is _meta_build._ORIG_REGISTER_PARAMETER
    for name, orig in _meta_build._ORIG_NN_INIT.items():
        assert getattr(nn.init, name) is orig
    assert not torch._C._is_torch_function_mode_enabled()
    assert _meta_build._ACTIVE is None


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
    normal, _ = build_and_load(lambda: arch.make(FILE_CLASSES), path, head=arch.head,
                               fast=False)
    assert torch.equal(_logits(fast, arch.hw), _logits(normal, arch.hw))


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
