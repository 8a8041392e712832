#!/usr/bin/env python
"""Benchmark zoo_core.finetune against what a user would write instead.

1. linear_probe training time for 1, 5 and 20 epochs: zoo_core's feature cache (the
   frozen backbone runs once per image) vs the naive loop that runs the frozen backbone
   every epoch (``cache_features=False``, otherwise the same code). Targets: >= 4x at
   5 epochs, >= 12x at 20 epochs.
2. finetune throughput (training images/s of the training loop) vs a plain hand-written
   PyTorch loop: torchvision ``ImageFolder`` + ``DataLoader`` + AdamW + cross entropy on
   the same model, data and timm preprocessing. Target: >= 0.95x (fp32).
3. bf16 vs fp32 on CPU (accelerate's autocast): finetune throughput ratio and the
   difference in validation accuracy after the same epochs.

Model: timm ``resnet18`` with random weights saved to a temporary safetensors file
(loaded through ``weights=PATH``, as pretrained weights would be). Data: synthetic
128x128 RGB PNGs (class-dependent colour plus noise) in an ImageFolder tree,
``train/`` and ``val/`` (80/20); the model's input size is set to 128 (``input_size``).
No files are written by the timed runs (``out=None``: no checkpoints, same for both).

    python benchmarks/bench_finetune.py            # 1,024 images
    python benchmarks/bench_finetune.py --quick    # 256 images, a smoke run
    python benchmarks/bench_finetune.py --threads 1  # on a busy machine
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_CLASSES = 10


def make_images(root: Path, n: int, size: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (NUM_CLASSES, 3))
    for i in range(n):
        c = i % NUM_CLASSES
        split = "val" if (i // NUM_CLASSES) % 5 == 4 else "train"
        noise = rng.normal(0, 40, (size, size, 3))
        pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
        d = root / split / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(d / f"{i:05d}.png")


def make_weights(path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=NUM_CLASSES)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def plain_loop(weights: Path, data: Path, size: int, batch_size: int, lr: float,
               seed: int) -> tuple[float, int]:
    """What one writes by hand: ImageFolder, DataLoader, AdamW, cross entropy.
    Returns (training-loop seconds, images)."""
    import torch
    import torch.nn.functional as F
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    import zoo_core

    torch.manual_seed(seed)
    model = zoo_core.build_model("resnet18", NUM_CLASSES, "finetune", weights=str(weights))
    dc = model.zoo.data_config
    transform = create_transform(input_size=(3, size, size), mean=dc.mean, std=dc.std,
                                 interpolation=dc.interpolation, crop_pct=dc.crop_pct,
                                 is_training=False)
    dataset = ImageFolder(str(data / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    opt = torch.optim.AdamW(zoo_core.param_groups(model, weight_decay=1e-4), lr=lr)
    model.train()
    seen, running = 0, 0.0
    started = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item() * len(y)
        seen += len(y)
    return time.perf_counter() - started, seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 images instead of 1,024")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", default="1,5,20")
    parser.add_argument("--repeats", type=int, default=2,
                        help="throughput: alternate runs, keep each side's best")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--bf16-epochs", type=int, default=2)
    args = parser.parse_args(argv)
    n = args.images or (256 if args.quick else 1024)
    epochs_list = [int(e) for e in args.epochs.split(",")]

    import torch

    from zoo_core.train import finetune  # zoo_core.finetune once exported

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPU(s); resnet18, {n} images {args.size}x{args.size} "
          f"({NUM_CLASSES} classes), batch {args.batch_size}", flush=True)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        root = Path(tmp)
        make_images(root / "data", n, args.size)
        make_weights(root / "resnet18.safetensors")
        common = dict(weights=str(root / "resnet18.safetensors"), input_size=args.size,
                      batch_size=args.batch_size, out=None, progress=False, verbose=False,
                      seed=0, threads=args.threads)
        data = root / "data"

        probe_rows = []
        for e in epochs_list:
            times = {}
            for cache in (True, False):
                started = time.perf_counter()
                _, res = finetune("resnet18", data, strategy="linear_probe", epochs=e,
                                  cache_features=cache, probe_solver="sgd", **common)
                times[cache] = time.perf_counter() - started
                assert res.feature_cache == cache
            probe_rows.append((e, times[True], times[False], res.num_train, res.num_val))
            print(f"  linear_probe {e:>3} epochs: cached {times[True]:7.2f} s, naive "
                  f"{times[False]:7.2f} s", flush=True)

        ours, plain = [], []
        for _ in range(args.repeats):
            secs, seen = plain_loop(root / "resnet18.safetensors", data, args.size,
                                    args.batch_size, 1e-3, 0)
            plain.append(seen / secs)
            _, res = finetune("resnet18", data, strategy="finetune", epochs=1, lr=1e-3,
                              **common)
            ours.append(res.history[0].images_per_s)
            print(f"  finetune throughput: zoo_core {ours[-1]:.1f} img/s, plain loop "
                  f"{plain[-1]:.1f} img/s", flush=True)

        prec = {}
        for precision in ("32", "bf16"):
            _, res = finetune("resnet18", data, strategy="finetune", epochs=args.bf16_epochs,
                              lr=1e-3, precision=precision, **common)
            prec[precision] = (max(m.images_per_s for m in res.history), res.final_val_acc)
            print(f"  finetune {precision:>4}: {prec[precision][0]:.1f} img/s, val acc "
                  f"{prec[precision][1]:.3f}", flush=True)

    targets = {5: 4.0, 20: 12.0}
    print()
    print(f"linear_probe on resnet18 ({probe_rows[0][3]} train + {probe_rows[0][4]} val "
          "images; wall time of finetune(), model build and data scan included)")
    print(f"{'epochs':>6} {'cached (s)':>11} {'naive (s)':>10} {'speed-up':>9} {'target':>8}")
    ok = True
    for e, cached, naive, _, _ in probe_rows:
        ratio = naive / cached
        target = targets.get(e)
        mark = "" if target is None else (f">= {target:g}x " + ("ok" if ratio >= target
                                                                else "MISSED"))
        ok &= target is None or ratio >= target
        print(f"{e:>6} {cached:>11.2f} {naive:>10.2f} {ratio:>8.1f}x {mark:>8}")
    best_ours, best_plain = max(ours), max(plain)
    ratio = best_ours / best_plain
    ok &= ratio >= 0.95
    print()
    print("finetune throughput (training loop, best of "
          f"{args.repeats}): zoo_core {best_ours:.1f} img/s vs plain PyTorch loop "
          f"{best_plain:.1f} img/s = {ratio:.2f}x (target >= 0.95x "
          f"{'ok' if ratio >= 0.95 else 'MISSED'})")
    (ips32, acc32), (ips16, acc16) = prec["32"], prec["bf16"]
    print(f"bf16 vs fp32 on CPU, finetune {args.bf16_epochs} epoch(s): {ips16:.1f} vs "
          f"{ips32:.1f} img/s = {ips16 / ips32:.2f}x; val acc {acc16:.3f} vs {acc32:.3f} "
          f"({acc16 - acc32:+.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
