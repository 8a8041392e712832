"""benchmarks/bench_cuda.py, the prepared GPU script: its logic and a CPU smoke run, so that
it is known to work before a GPU is lent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cuda.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_cuda", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_cuda"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_plan_and_parity():
    bench = _module()
    cuda = [c.name for c in bench.plan("cuda", dry=False)]
    assert cuda == ["fp32", "bf16+cl", "fp16+cl", "bf16+cl+compile"]
    assert bench.plan("cuda", dry=True)[-1].compile == "inductor"
    cpu = bench.plan("cpu", dry=True)
    assert "fp16+cl" not in [c.name for c in cpu] and cpu[-1].compile == "eager"
    ok, why = bench.parity({"val_acc": 0.90, "val_loss": 0.30},
                           {"val_acc": 0.89, "val_loss": 0.31})
    assert ok and "diff 0.010" in why
    assert not bench.parity({"val_acc": 0.90, "val_loss": 0.30},
                            {"val_acc": 0.80, "val_loss": 0.30})[0]
    assert not bench.parity({"val_acc": 0.90, "val_loss": 0.30},
                            {"val_acc": 0.90, "val_loss": 0.40})[0]


def test_no_cuda_skips_cleanly():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would run")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)
    assert proc.returncode == 0 and "no CUDA device here" in proc.stdout
    assert "--device cpu --dry" in proc.stdout


@pytest.mark.slow
def test_cpu_dry_run(tmp_path):
    out = tmp_path / "cuda.json"
    proc = subprocess.run([sys.executable, "-W", "error", str(SCRIPT), "--device", "cpu",
                           "--dry", "--json", str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    assert res["ok"] and res["build"]["ok"]
    assert [r["config"]["name"] for r in res["speed"]] == ["fp32", "bf16+cl",
                                                            "bf16+cl+compile"]
    assert all(r["images_per_s"] > 0 and r["master_fp32"] for r in res["speed"])
    assert set(res["parity"]) >= {"fp32", "bf16", "ok", "why"}
    assert "all checks passed" in proc.stdout
