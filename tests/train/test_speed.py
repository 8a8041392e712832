"""--channels-last and --compile: decided per device, wired into the training step, and the
returned model back in the plain layout."""

from __future__ import annotations

import pytest
import torch

import zoo_core
from zoo_core.train import finetune
from zoo_core.train._speed import resolve_speed
from zoo_core.train._trainer import _Trainer

QUIET = {"progress": False, "verbose": False, "threads": 1}


def test_resolve_speed():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert not resolve_speed(None, None, cpu).channels_last
    assert resolve_speed("auto", None, cuda).channels_last  # the CUDA default
    assert not resolve_speed("off", None, cuda).channels_last
    assert resolve_speed(True, None, cpu).channels_last
    assert resolve_speed(None, True, cpu).compile == "inductor"
    assert resolve_speed(None, "eager", cpu).compile == "eager"
    with pytest.raises(zoo_core.InvalidArgumentError, match="--channels-last must be one of"):
        resolve_speed("sideways", None, cpu)
    with pytest.raises(zoo_core.InvalidArgumentError, match="not a torch.compile backend.*"
                                                            "inductor"):
        resolve_speed(None, "warp9", cpu)


@pytest.mark.slow
def test_channels_last_and_compile_reach_the_step(digits, monkeypatch):
    seen = []
    original = _Trainer._micro_step

    def spy(self, opt, x, y, **kw):
        if x is not None and not seen:
            conv = next(m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d))
            seen.append((x.is_contiguous(memory_format=torch.channels_last),
                         conv.weight.is_contiguous(memory_format=torch.channels_last),
                         type(self.net).__name__))
        return original(self, opt, x, y, **kw)

    monkeypatch.setattr(_Trainer, "_micro_step", spy)
    kw = dict(strategy="finetune", epochs=1, lr=0.01, **QUIET)
    model, fast = finetune("zoonet_s", digits, channels_last="on", compile="eager", **kw)
    assert seen == [(True, True, "OptimizedModule")]
    assert fast.extra["lr"] == 0.01
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # handed back in the plain layout
    assert type(model).__name__ != "OptimizedModule"
    seen.clear()
    _, plain = finetune("zoonet_s", digits, **kw)
    assert seen[0][:2] == (False, False)  # the CPU default: no channels_last
    assert fast.history[0].val_loss == pytest.approx(plain.history[0].val_loss, rel=1e-3)
