"""The fast path assigns tensors directly only where load_state_dict would do just that."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from torch import nn  # noqa: E402

from zoo_core.build import _fastload  # noqa: E402
from zoo_core.build._fastload import build_and_load  # noqa: E402


class Net(nn.Module):
    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class HookedNet(Net):
    """A load_state_dict pre-hook that rewrites the file's values: must be honoured."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__(num_classes)

        def double_bias(module, state_dict, prefix, *args):
            key = prefix + "bias"
            if key in state_dict:
                state_dict[key] = state_dict[key] * 2

        self.conv.register_load_state_dict_pre_hook(double_bias)


def _file(tmp_path, drop=()) -> str:
    torch.manual_seed(0)
    sd = {k: v.detach().clone() + (0.5 if v.is_floating_point() else 0)
          for k, v in Net().state_dict().items() if k not in drop}
    path = str(tmp_path / "w.safetensors")
    safetensors_torch.save_file(sd, path)
    return path


def test_plain_model_is_assigned_directly(tmp_path, monkeypatch):
    path = _file(tmp_path)
    assert _fastload._plain_loading(Net())
    calls = []
    monkeypatch.setattr(nn.Module, "load_state_dict",
                        lambda self, *a, **k: calls.append(1) or (_ for _ in ()).throw(
                            AssertionError("load_state_dict called")))
    model, rep = build_and_load(Net, path, head="fc")
    assert rep.fast_path and not calls
    file_sd = safetensors_torch.load_file(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, file_sd[k]), k
    assert type(model.conv.weight) is nn.Parameter and model.conv.weight.requires_grad


def test_load_hooks_are_honoured_like_the_normal_path(tmp_path):
    path = _file(tmp_path)
    assert not _fastload._plain_loading(HookedNet())
    fast, rep = build_and_load(HookedNet, path, head="fc")
    normal, _ = build_and_load(HookedNet, path, head="fc", fast=False)
    assert rep.fast_path
    assert torch.equal(fast.conv.bias, normal.conv.bias)
    assert torch.equal(fast.conv.bias, safetensors_torch.load_file(path)["conv.bias"] * 2)


def test_file_without_num_batches_tracked_loads_like_load_state_dict(tmp_path):
    path = _file(tmp_path, drop=("bn.num_batches_tracked",))
    fast, rep = build_and_load(Net, path, head="fc")
    normal, _ = build_and_load(Net, path, head="fc", fast=False)
    assert rep.fast_path
    assert torch.equal(fast.bn.num_batches_tracked, normal.bn.num_batches_tracked)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    fast.eval(), normal.eval()
    assert torch.equal(fast(x), normal(x))


def test_failing_construct_leaves_no_reader_thread(tmp_path):
    import threading

    path = _file(tmp_path)

    def broken():
        raise ValueError("the builder's own bug")

    with pytest.raises(ValueError, match="own bug"):
        build_and_load(broken, path, head="fc")
    assert not [t for t in threading.enumerate() if t.name == "zoo_core-read-weights"]


class ExtraStateNet(Net):
    """Extra state in its state_dict: the file must carry it, as with load_state_dict."""

    def get_extra_state(self):
        return torch.tensor([7])

    def set_extra_state(self, state):
        self.extra = state


def test_expected_keys_come_from_state_dict_where_it_does_more(tmp_path):
    plain = Net()
    mods = list(plain.named_modules(remove_duplicate=False))
    fast = _fastload._expected_state(plain, mods)
    assert list(fast) == list(plain.state_dict(keep_vars=True))
    assert all(fast[k] is v for k, v in plain.state_dict(keep_vars=True).items())

    hooked = Net()
    hooked.fc.register_state_dict_pre_hook(lambda *a: calls.append(1))
    calls: list[int] = []
    _fastload._expected_state(hooked, list(hooked.named_modules(remove_duplicate=False)))
    assert calls == [1]  # the hook ran: state_dict() was used

    extra = ExtraStateNet()
    keys = _fastload._expected_state(extra, list(extra.named_modules(remove_duplicate=False)))
    assert "_extra_state" in keys
    with pytest.raises(Exception, match="_extra_state"):  # the file lacks it: refused
        build_and_load(ExtraStateNet, _file(tmp_path), head="fc")
