"""finetune under torchrun and accelerate launch: 2 CPU processes with gloo.

Both ranks must end with identical weights, and a data-parallel run must equal a
single-process run over the same global batches. The equivalence is checked with
``linear_probe`` (cached and naive loops): its BatchNorm layers are frozen, so a rank's
local batch cannot change them. With ``finetune`` each rank's trainable BatchNorm
normalises its own local batch (no SyncBatchNorm on CPU), which legitimately differs
from one process normalising the global batch; there we check only that the ranks agree
(gradients are all-reduced, running statistics averaged at the end of each epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo_core.train import finetune
from zoo_core_plugins.zoonet.digits import export_imagefolder

SCRIPT = """
import json, os, sys, torch
from safetensors.torch import save_file
import zoo_core.train as f

data, odd, out = sys.argv[1], sys.argv[2], sys.argv[3]
rank = int(os.environ["RANK"])
RUNS = {RUNS!r}
for name, kw in RUNS.items():
    model, res = f.finetune("zoonet_s", odd if name == "odd" else data, out=f"{out}/{name}",
                            progress=False, verbose=False, threads=1, **kw)
    assert res.world_size == 2, res.world_size
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{out}/{name}-rank{rank}.safetensors")
    with open(f"{out}/{name}-rank{rank}.json", "w") as fh:
        json.dump({"num_train": res.num_train, "num_val": res.num_val,
                   "val_images": [m.val_images for m in res.history],
                   "val_acc": [m.val_acc for m in res.history],
                   "lr": res.extra.get("lr")}, fh)
"""

RUNS = {
    "probe_naive": {"strategy": "linear_probe", "epochs": 3, "batch_size": 6,
                    "cache_features": False, "seed": 5, "probe_solver": "sgd"},
    "probe_cached": {"strategy": "linear_probe", "epochs": 3, "batch_size": 6,
                     "cache_features": True, "seed": 5, "probe_solver": "sgd"},
    "finetune": {"strategy": "finetune", "epochs": 2, "batch_size": 6, "seed": 5},
    # 35 training images do not split evenly across 2 ranks; 179 val images neither
    "odd": {"strategy": "partial:1", "epochs": 1, "batch_size": 6, "seed": 5,
            "accumulate": 2},
    # the range test and the class-balanced sampler under two ranks: both must agree
    "lr_auto_sampler": {"strategy": "partial:1", "epochs": 1, "batch_size": 6, "seed": 5,
                        "lr": "auto", "balance": "sampler"},
}


@pytest.mark.slow
def test_two_processes_match_each_other_and_a_single_process(tmp_path):
    data = export_imagefolder(tmp_path / "digits", per_class=6)  # 30 images: even split
    odd = export_imagefolder(tmp_path / "odd", per_class=7)  # 35 images
    script = tmp_path / "ddp_script.py"
    script.write_text(textwrap.dedent(SCRIPT).replace("{RUNS!r}", repr(RUNS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", str(script), str(data), str(odd), str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    out = tmp_path / "out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, kw in RUNS.items():
            r0 = load_file(out / f"{name}-rank0.safetensors")
            r1 = load_file(out / f"{name}-rank1.safetensors")
            for key in r0:
                assert torch.equal(r0[key], r1[key]), (name, key)
            # rank 0 alone wrote the run's files
            assert (out / name / "metrics.json").is_file()
            assert (out / name / "best" / "model.safetensors").is_file()
            assert json.loads((out / name / "run.json").read_text())["world_size"] == 2
            # every validation image evaluated exactly once across the two ranks
            info = [json.loads((out / f"{name}-rank{r}.json").read_text()) for r in (0, 1)]
            assert info[0] == info[1]
            assert info[0]["val_images"] == [info[0]["num_val"]] * len(info[0]["val_images"])
            if name == "lr_auto_sampler":  # one range test's lr on both ranks, recorded
                run = json.loads((out / name / "run.json").read_text())
                assert run["lr_find"]["suggestion"] == info[0]["lr"] == info[1]["lr"]
                assert run["hyperparameters"]["balance"] == "sampler"
            if name in ("finetune", "odd", "lr_auto_sampler"):
                continue  # (local BatchNorm batches; a sampler drawn per rank)
            single, res = finetune("zoonet_s", data, progress=False, verbose=False, **kw)
            assert res.world_size == 1
            for key, value in single.state_dict().items():
                torch.testing.assert_close(r0[key], value, rtol=1e-5, atol=1e-6,
                                           msg=f"{name}: {key}")
    finally:
        torch.set_num_threads(before)
    assert not list(Path(out).rglob("*.tmp-*"))


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path):
    """The CLI as users launch it: ``accelerate launch --multi_gpu --num_processes 2 -m
    zoo_core.cli finetune ...`` on a machine without GPUs (two gloo processes). One
    process writes; every val image is counted once. ``--cpu --num_processes 2`` starts a
    single process in accelerate 1.x (its CPU path spawns only through MPI): a clear
    error, not a silent one-process run."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher, "accelerate is a dependency; its launcher must be installed"
    data = export_imagefolder(tmp_path / "digits", per_class=7)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    args = ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "zoo_core.cli", "finetune", "zoonet_s", "--data",
            str(data), "--strategy", "linear_probe", "--probe-solver", "sgd", "--epochs", "2",
            "--batch-size", "6",
            "--out", str(out), "--threads", "1", "--no-progress"]
    proc = subprocess.run([launcher, "launch", "--cpu", *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and "--multi_gpu --num_processes N" in proc.stderr, \
        proc.stderr[-3000:]
    assert not out.exists()
    proc = subprocess.run([launcher, "launch", "--multi_gpu", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("best       val acc") == 1  # rank 0 alone reports
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2
    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [r["val_images"] for r in rows] == [run["data"]["num_val"]] * 2
    assert (out / "best" / "model.safetensors").is_file()
    assert not list(out.rglob("*.tmp-*"))
