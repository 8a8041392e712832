"""Shared by tests/build/test_fastload*.py: small hand-written models, the architectures
under test, the session fixture `weights` (nudged safetensors files of them; each test file
imports it), and checks on a built model (no meta tensors left, logits, build patches restored).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

from torch import nn  # noqa: E402
from torch.nn.init import trunc_normal_ as _bound_torch_trunc_normal_  # noqa: E402

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



# One set of files per session, however many test modules import the fixture (each import is a
# FixtureDef of its own): keyed by the session's tmp_path_factory.
_GETTERS: list[tuple[object, Callable[..., str]]] = []


def _weights_getter(tmp_path_factory):
    for factory, get in _GETTERS:
        if factory is tmp_path_factory:
            return get
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

    _GETTERS.append((tmp_path_factory, get))
    return get


@pytest.fixture(scope="session", name="weights")
def weights_fixture(tmp_path_factory):
    """get(arch_id, variant="fp32" | "fp16") -> path of a nudged safetensors file, made once."""
    return _weights_getter(tmp_path_factory)


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
    assert nn.Parameter.__dict__["__new__"] is _meta_build._ORIG_PARAMETER_NEW
    assert "new_empty" not in torch.Tensor.__dict__  # (inherited from TensorBase)
    for name in ("empty", "empty_like", "empty_strided"):
        assert type(getattr(torch, name)).__name__ == "builtin_function_or_method", name
