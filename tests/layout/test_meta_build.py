"""The construction recorder (zoo_core/layout/_meta_build.py) without a weights file.

Construction runs with meta parameters that are a tensor subclass while it lasts (only the
calls touching them reach the recorder); these tests hold what that must not change: plain
classes afterwards, the patches undone, the same roots/records/taints as before, writes
through views still seen, uninitialised memory still known.
"""

from __future__ import annotations

import copy
import threading

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from zoo_core.layout import _meta_build  # noqa: E402
from zoo_core.layout._meta_build import _construct_on_meta, _FastPathUnsupported  # noqa: E402


class _Mixed(nn.Module):
    """What architectures do with parameters while constructing, all in one module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.same = nn.Parameter(self.fc.weight)  # Parameter(<param>): a new parameter
        self.part = nn.Parameter(self.fc.weight.detach()[:2].clone())  # of a derived tensor
        nn.init.constant_(self.part, 3.0)
        self.copy = copy.deepcopy(self.fc)  # nn.TransformerEncoder clones layers like this
        nn.init.constant_(self.copy.weight, 5.0)
        self.alias = self.fc.weight.data
        self.view = self.fc.weight.detach()[0]
        self.view_copy = copy.deepcopy(self.view)
        self.enc = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, enable_nested_tensor=False
        )


def _assert_restored() -> None:
    assert nn.Module.register_parameter is _meta_build._ORIG_REGISTER_PARAMETER
    assert nn.Parameter.__dict__["__new__"] is _meta_build._ORIG_PARAMETER_NEW
    assert "new_empty" not in torch.Tensor.__dict__
    for name in ("empty", "empty_like", "empty_strided"):
        assert type(getattr(torch, name)).__name__ == "builtin_function_or_method", name
    for name, orig in _meta_build._ORIG_NN_INIT.items():
        assert getattr(nn.init, name) is orig
    assert _meta_build._ACTIVE is None


def test_construction_ends_with_plain_classes_and_patches_undone():
    model, rec = _construct_on_meta(_Mixed)
    for n, p in model.named_parameters(remove_duplicate=False):
        assert type(p) is nn.Parameter and p.is_meta, n
    for k in ("alias", "view", "view_copy"):
        t = getattr(model, k)
        assert type(t) is torch.Tensor and t.is_meta, k
    assert all(type(t) is torch.Tensor for t in rec.keep if not isinstance(t, nn.Parameter))
    _assert_restored()
    # and nn.Parameter / torch.empty behave as usual again
    assert type(nn.Parameter(torch.ones(2))) is nn.Parameter
    assert torch.empty(3).shape == (3,) and torch.ones(2).new_empty(5).shape == (5,)


def test_parameters_made_of_parameters_are_roots_of_their_own():
    model, rec = _construct_on_meta(_Mixed)
    assert model.same is not model.fc.weight and id(model.same) in rec.roots
    assert "_is_param" not in model.part.__dict__
    assert torch.equal(rec.materialize(model.part), torch.full((2, 4), 3.0))
    w = rec.materialize(model.fc.weight)  # Linear's kaiming_uniform_, nothing else
    assert w.shape == (3, 4) and w.abs().max() <= 0.5 and w.std() > 0.05


def test_a_deep_copy_is_no_root_and_its_ops_are_not_the_originals():
    model, rec = _construct_on_meta(_Mixed)
    assert id(model.copy.weight) not in rec.roots
    assert [f.__name__ for f, _, _ in rec.ops[id(model.fc.weight)]] == ["kaiming_uniform_"]
    with pytest.raises(_FastPathUnsupported, match="not registered"):
        rec.materialize(model.copy.weight)


class _ViewWrites(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)
        self.c = nn.Linear(4, 3)
        with torch.no_grad():
            self.a.weight[:, :2].fill_(1.0)  # a view of the parameter
            self.b.weight.data[0].zero_()  # a view of an alias
            self.c.weight.data.normal_(0.0, 0.01)  # an alias: recorded, replayable


def test_writes_through_views_taint_and_alias_writes_are_recorded():
    model, rec = _construct_on_meta(_ViewWrites)
    for lin in (model.a, model.b):
        with pytest.raises(_FastPathUnsupported, match="view"):
            rec.materialize(lin.weight)
    assert rec.materialize(model.c.weight).std() < 0.02


class _Uninitialised(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.empty = nn.Parameter(torch.empty(4, 4))
        self.new_empty = nn.Parameter(torch.zeros(1).new_empty(4, 4))
        self.empty_like = nn.Parameter(torch.empty_like(torch.zeros(4, 4)))
        self.zeros = nn.Parameter(torch.zeros(4, 4))
        self.scaled = nn.Parameter(torch.ones(4, 4) * 0.5)
        shared = torch.empty(4, 4)  # one uninitialised storage, two parameters
        self.shared1, self.shared2 = nn.Parameter(shared), nn.Parameter(shared)
        for _ in range(4):  # scratch memory freed again: a later tensor may not reuse it
            torch.empty(16)
        self.zeros_after = nn.Parameter(torch.zeros(16))


def test_memory_from_the_empty_factories_is_known_uninitialised():
    model, rec = _construct_on_meta(_Uninitialised)
    for name in ("empty", "new_empty", "empty_like", "shared1", "shared2"):
        with pytest.raises(_FastPathUnsupported, match="no initialisation"):
            rec.materialize(getattr(model, name))
    assert not rec.materialize(model.zeros).any()
    assert torch.equal(rec.materialize(model.scaled), torch.full((4, 4), 0.5))
    assert not rec.materialize(model.zeros_after).any()
    assert not rec.empties  # released when construction ended


def test_other_threads_get_real_parameters_and_plain_factories_meanwhile():
    seen = {}

    def other() -> None:
        lin = nn.Linear(8, 4)
        seen["lin"] = (type(lin.weight), lin.weight.device.type, lin.weight.std().item())
        seen["param"] = type(nn.Parameter(torch.empty(2)))

    def construct() -> nn.Module:
        t = threading.Thread(target=other)
        t.start()
        t.join()
        return nn.Linear(8, 4)

    model, rec = _construct_on_meta(construct)
    assert seen["lin"][:2] == (nn.Parameter, "cpu") and seen["lin"][2] > 0.01
    assert seen["param"] is nn.Parameter
    assert model.weight.is_meta and id(model.weight) in rec.roots
    _assert_restored()


def test_a_failing_construct_restores_everything():
    def boom() -> nn.Module:
        _Mixed()
        raise RuntimeError("bad architecture")

    with pytest.raises(RuntimeError, match="bad architecture"):
        _construct_on_meta(boom)
    _assert_restored()
