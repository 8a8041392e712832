"""How a run uses the machine: default workers, persistent workers, and the bf16-on-CPU
cost warning (issue 20 item 5)."""

from __future__ import annotations

import json

import pytest
import torch

from zoo_core.train import _runtime, finetune
from zoo_core.train._runtime import PerformanceWarning, cpu_native_bf16, default_workers

QUIET = {"progress": False, "verbose": False, "threads": 1}


def test_default_workers_by_input_size_and_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_workers((3, 32, 32), cpu, cores=16) == 0
    assert default_workers((3, 64, 64), cpu, cores=16) == 0
    assert default_workers((3, 224, 224), cpu, cores=2) == 1
    assert default_workers((3, 224, 224), cpu, cores=16) == 4
    assert default_workers((3, 32, 32), cuda, cores=16) == 8
    assert default_workers((3, 224, 224), cuda, cores=4) == 4
    assert default_workers(None, cpu, cores=1) == 1  # unknown size: not small


def test_default_workers_recorded_in_run_json(digits, tmp_path):
    finetune("zoonet_s", digits, strategy="finetune", epochs=1, out=tmp_path / "r", **QUIET)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["hyperparameters"]["num_workers"] == 0  # 32 px on CPU


@pytest.mark.slow
def test_workers_persist_across_epochs_and_match_in_process_loading(digits):
    m0, r0 = finetune("zoonet_s", digits, strategy="finetune", epochs=2, num_workers=0,
                      **QUIET)
    m1, r1 = finetune("zoonet_s", digits, strategy="finetune", epochs=2, num_workers=1,
                      **QUIET)
    # same images, same order (the sampler is the trainer's, set per epoch): same model
    assert [h.train_loss for h in r0.history] == pytest.approx(
        [h.train_loss for h in r1.history], rel=1e-5)
    for (k, a), b in zip(m0.state_dict().items(), m1.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_bf16_on_a_cpu_without_native_bf16_warns_with_the_cost(digits, monkeypatch):
    assert isinstance(cpu_native_bf16(), bool)
    monkeypatch.setattr(_runtime, "cpu_native_bf16", lambda: False)
    with pytest.warns(PerformanceWarning, match=r"bf16 .*4-8x slower than fp32.*--precision "
                      r"32"):
        finetune("zoonet_s", digits, strategy="linear_probe", precision="bf16", **QUIET)


def test_bf16_with_native_support_or_fp32_is_quiet(digits, monkeypatch):
    import warnings

    monkeypatch.setattr(_runtime, "cpu_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        finetune("zoonet_s", digits, strategy="linear_probe", precision="bf16", **QUIET)
    monkeypatch.setattr(_runtime, "cpu_native_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        finetune("zoonet_s", digits, strategy="linear_probe", **QUIET)
