#!/usr/bin/env python
"""``zoo finetune`` at 224 px against a plain timm + torchvision loop, as whole processes.

Data: a generated ImageFolder of 224x224 RGB JPEGs (10 classes, class-dependent colour
plus noise; ``train/`` and ``val/``, 80/20). Model: timm ``resnet18`` with random weights
saved to a safetensors file (offline; loaded with ``--weights PATH`` and ``load_state_dict``).
Each case is one new process, timed from start to exit, all in one run:

* ``zoo default``: ``zoo finetune resnet18 --strategy finetune`` with default flags
  (default ``--workers``: half the cores on CPU at 224 px, every core on CUDA);
* ``zoo workers 0``: the same with ``--workers 0`` (what the default workers buy);
* ``zoo tuned``: ``--workers`` = every core available (and ``--precision bf16`` on CUDA);
* ``plain``: timm ``create_model`` + ``resolve_data_config``/``create_transform``,
  torchvision ``ImageFolder``, ``DataLoader`` (the workers zoo's default picked, pinned on
  CUDA, persistent), AdamW, cross entropy, a validation pass per epoch — what a user
  writes instead.

Every case: the same batch size, epochs, torch threads (``--threads``) and device. zoo
runs write their run folder (checkpoints each epoch, as they do by default); the plain
loop writes nothing. Printed: wall seconds, training images/s of the loop (zoo's
``train_seconds`` from ``--json``; the plain loop's own timer) and the ratios.

    python benchmarks/bench_scale.py                 # 1,000 images, 2 epochs
    python benchmarks/bench_scale.py --images 80 --epochs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUM_CLASSES = 10
SIZE = 224

PLAIN = r'''
import json, sys, time
import torch, timm
from safetensors.torch import load_file
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

data, weights, batch, epochs, threads, workers, device = sys.argv[1:8]
batch, epochs, threads, workers = int(batch), int(epochs), int(threads), int(workers)
torch.set_num_threads(threads)
torch.manual_seed(0)
dev = torch.device(device)
model = timm.create_model("resnet18", num_classes=10)
model.load_state_dict(load_file(weights))
model.to(dev)
cfg = resolve_data_config({}, model=model)
tf = create_transform(**cfg)
train = ImageFolder(f"{data}/train", tf)
val = ImageFolder(f"{data}/val", tf)
kw = dict(num_workers=workers, pin_memory=dev.type == "cuda",
          persistent_workers=workers > 0)
tl = DataLoader(train, batch_size=batch, shuffle=True, **kw)
vl = DataLoader(val, batch_size=batch, **kw)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
loss_fn = torch.nn.CrossEntropyLoss()
train_s, seen, acc = 0.0, 0, 0.0
for epoch in range(epochs):
    model.train()
    t0 = time.perf_counter()
    for x, y in tl:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        seen += len(y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    train_s += time.perf_counter() - t0
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in vl:
            correct += int((model(x.to(dev)).argmax(1).cpu() == y).sum())
            n += len(y)
    acc = correct / n
print(json.dumps({"train_seconds": train_s, "images_per_s": seen / train_s,
                  "final_val_acc": acc}))
'''


def make_images(root: Path, n: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (NUM_CLASSES, 3))
    for i in range(n):
        c = i % NUM_CLASSES
        split = "val" if (i // NUM_CLASSES) % 5 == 4 else "train"
        noise = rng.normal(0, 40, (SIZE, SIZE, 3))
        pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
        d = root / split / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(d / f"{i:05d}.jpg", quality=90)


def make_weights(path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=NUM_CLASSES)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads in every case (default: zoo's default for 224 px)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    ap.add_argument("--json-out", default=None, help="also write the results here")
    ap.add_argument("--cases", default=None,
                    help="comma-separated subset to run (default: all; ratios need all)")
    args = ap.parse_args()

    import torch

    from zoo_core.train._args import default_threads
    from zoo_core.train._runtime import available_cores, default_workers

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or default_threads(None, (3, SIZE, SIZE))
    workers = default_workers((3, SIZE, SIZE), torch.device(device))
    cores = available_cores()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    zoo = [sys.executable, "-m", "zoo_core.cli", "finetune", "resnet18"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, weights = root / "data", root / "w.safetensors"
        t0 = time.perf_counter()
        make_images(data, args.images)
        make_weights(weights)
        print(f"data        {args.images} JPEGs of {SIZE} px in {time.perf_counter() - t0:.1f} s;"
              f" {device}, {cores} core(s), {threads} thread(s), batch {args.batch_size}, "
              f"{args.epochs} epochs; zoo's default workers here: {workers}", flush=True)
        common = ["--data", str(data), "--strategy", "finetune", "--epochs",
                  str(args.epochs), "--batch-size", str(args.batch_size), "--weights",
                  str(weights), "--threads", str(threads), "--val-fraction", "0.2",
                  "--device", device, "--no-progress", "--json"]
        tuned = ["--workers", str(max(1, cores))] + (
            ["--precision", "bf16"] if device == "cuda" else [])
        cases = {
            "zoo default": zoo + common + ["--out", str(root / "r1")],
            "zoo workers 0": zoo + common + ["--workers", "0", "--out", str(root / "r2")],
            "zoo tuned": zoo + common + tuned + ["--out", str(root / "r3")],
            "plain": [sys.executable, "-c", PLAIN, str(data), str(weights),
                      str(args.batch_size), str(args.epochs), str(threads), str(workers),
                      device],
        }
        results = {}
        wanted = set(args.cases.split(",")) if args.cases else set(cases)
        for name, cmd in cases.items():
            if name not in wanted:
                continue
            wall, rec = timed(cmd, env)
            ips = rec.get("images_per_s") or 0.0
            results[name] = {"wall_s": round(wall, 2), "train_s": round(rec["train_seconds"], 2),
                             "images_per_s": round(ips, 1),
                             "final_val_acc": round(rec["final_val_acc"], 3)}
            print(f"{name:<14} wall {wall:7.1f} s   loop {rec['train_seconds']:7.1f} s   "
                  f"{ips:7.1f} img/s   val acc {rec['final_val_acc']:.3f}", flush=True)
    if set(results) != set(cases):
        return
    plain = results["plain"]
    print()
    for name in ("zoo default", "zoo tuned", "zoo workers 0"):
        r = results[name]
        print(f"{name:<14} vs plain: wall {plain['wall_s'] / r['wall_s']:.2f}x, loop "
              f"throughput {r['images_per_s'] / plain['images_per_s']:.2f}x (>1: zoo faster)")
    d, w0 = results["zoo default"], results["zoo workers 0"]
    print(f"default workers ({workers}) vs --workers 0 at {SIZE} px: loop throughput "
          f"{d['images_per_s'] / w0['images_per_s']:.2f}x, wall "
          f"{w0['wall_s'] / d['wall_s']:.2f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "device": device, "cores": cores, "threads": threads, "workers": workers,
            "images": args.images, "epochs": args.epochs, "batch_size": args.batch_size,
            "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
