"""The CUDA path in one prepared script, for a lent GPU machine (no network needed).

1. build: a model built on the device through the weights fast path;
2. speed: training throughput (images/s) and peak memory of fp32, bf16 and fp16 autocast
   with channels_last, and bf16 + torch.compile, on the same model, batch and input size
   (each config also checks that every parameter with a gradient moved and the fp32
   master weights stayed fp32);
3. parity: ``zoo_core.finetune`` on the embedded digits task in fp32 and in bf16 (CUDA:
   channels_last by default, as a user gets it), same seed: the final validation accuracy
   and loss must agree (|acc diff| <= 0.03, loss within 10 %).

Exit status 0 when every check passes, 1 otherwise. Without CUDA it says so and exits 0.

    python benchmarks/bench_cuda.py [--model resnet50] [--batch 64] [--steps 30] [--size 224]
                                    [--json results/cuda.json]
    python benchmarks/bench_cuda.py --device cpu --dry   # the same logic on the CPU, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ACC_TOL, LOSS_RTOL = 0.03, 0.10


@dataclass(frozen=True)
class Config:
    name: str
    dtype: str | None  # autocast dtype: None, "bfloat16", "float16"
    channels_last: bool
    compile: str | None  # torch.compile backend


def plan(device_type: str, dry: bool) -> list[Config]:
    """The configurations to time: fp16 only on CUDA; compile with inductor on CUDA (the
    CPU smoke run uses the eager backend: the wiring, not a C++ toolchain)."""
    configs = [Config("fp32", None, False, None),
               Config("bf16+cl", "bfloat16", True, None)]
    if device_type == "cuda":
        configs.append(Config("fp16+cl", "float16", True, None))
    configs.append(Config("bf16+cl+compile", "bfloat16", True,
                          "eager" if dry and device_type != "cuda" else "inductor"))
    return configs


def parity(fp32: dict[str, float], bf16: dict[str, float]) -> tuple[bool, str]:
    """Whether two finetune results agree within the tolerances, and why not."""
    d_acc = abs(fp32["val_acc"] - bf16["val_acc"])
    d_loss = abs(fp32["val_loss"] - bf16["val_loss"]) / max(abs(fp32["val_loss"]), 1e-8)
    ok = d_acc <= ACC_TOL and d_loss <= LOSS_RTOL
    return ok, (f"val acc {fp32['val_acc']:.3f} vs {bf16['val_acc']:.3f} (diff {d_acc:.3f}, "
                f"tol {ACC_TOL}); val loss {fp32['val_loss']:.4f} vs {bf16['val_loss']:.4f} "
                f"({d_loss:.1%}, tol {LOSS_RTOL:.0%})")


def check_build(model_name: str, device: Any) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    import zoo_core

    with tempfile.TemporaryDirectory() as tmp:
        ref = zoo_core.build_model(model_name, 1000, "scratch")
        path = Path(tmp) / "w.safetensors"
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
        start = time.perf_counter()
        model = zoo_core.build_model(model_name, 10, "finetune", weights=str(path),
                                     device=device)
        ms = (time.perf_counter() - start) * 1000
    ok = all(p.device.type == device.type for p in model.parameters())
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"ok": ok, "ms": ms}


def time_config(model_name: str, cfg: Config, device: Any, *, batch: int, size: int,
                steps: int, warmup: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    import zoo_core

    torch.manual_seed(0)
    model = zoo_core.build_model(model_name, 10, "scratch", device=device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    model.train()
    net = torch.compile(model, backend=cfg.compile) if cfg.compile else model
    opt = torch.optim.AdamW(zoo_core.param_groups(model, weight_decay=0.05), lr=1e-4)
    dtype = getattr(torch, cfg.dtype) if cfg.dtype else None
    scaler = torch.amp.GradScaler("cuda") if cfg.dtype == "float16" else None
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            loss = F.cross_entropy(net(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    compile_start = time.perf_counter()
    first = step()
    sync()
    first_s = time.perf_counter() - compile_start
    moved = [n for n, p in model.named_parameters()
             if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    stuck = [n for n in moved if torch.equal(before[n], model.get_parameter(n))]
    fp32 = all(p.dtype == torch.float32 for p in model.parameters())
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        last = step()
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    # fp16's scaler may skip the first steps (inf gradients): "moved" is checked on bf16/fp32
    ok = fp32 and (not stuck or scaler is not None) and bool(moved)
    return {"config": asdict(cfg), "images_per_s": steps * batch / seconds,
            "first_step_s": first_s, "peak_mib": peak, "loss_first": first,
            "loss_last": last, "stuck": stuck[:5], "master_fp32": fp32, "ok": ok}


def finetune_parity(device: Any, *, epochs: int, per_class: int,
                    compile: str | None) -> dict[str, Any]:
    import zoo_core

    runs = {}
    for precision in ("32", "bf16"):
        start = time.perf_counter()
        with warnings.catch_warnings():
            if device.type == "cpu":  # --dry: zoo's bf16-on-CPU cost warning is expected
                warnings.filterwarnings("ignore", message="--precision bf16 on this CPU")
            _, res = zoo_core.finetune(
                "zoonet_s", strategy="finetune", epochs=epochs, per_class=per_class,
                precision=precision, device=str(device), seed=0, progress=False,
                verbose=False, threads=1 if device.type == "cpu" else None,
                compile=compile if precision == "bf16" else None)
        h = res.history[-1]
        runs[precision] = {"val_acc": h.val_acc, "val_loss": h.val_loss,
                           "seconds": time.perf_counter() - start,
                           "images_per_s": res.images_per_s}
    ok, why = parity(runs["32"], runs["bf16"])
    return {"fp32": runs["32"], "bf16": runs["bf16"], "ok": ok, "why": why,
            "bf16_compile": compile}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=10, help="parity: finetune epochs")
    parser.add_argument("--dry", action="store_true",
                        help="smoke run: zoonet_s, 32 px, batch 8, 2 steps, 1 parity epoch")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_cuda: no CUDA device here, nothing to measure (skipped). On a GPU "
              "machine run it as is; `--device cpu --dry` checks its logic on the CPU.")
        return 0
    if args.dry:
        args.model, args.batch, args.steps, args.size, args.epochs = "zoonet_s", 8, 2, 32, 1
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"bench_cuda: {args.model}, batch {args.batch}, {args.size} px, {args.steps} "
          f"steps on {device} ({where}), torch {torch.__version__}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    results: dict[str, Any] = {"device": where, "model": args.model, "batch": args.batch,
                               "size": args.size, "steps": args.steps, "dry": args.dry}
    results["build"] = build = check_build(args.model, device)
    print(f"build      {build['ms']:.0f} ms on {device}: {'ok' if build['ok'] else 'FAILED'}")
    rows = []
    print(f"{'config':<18} {'images/s':>9} {'x fp32':>7} {'1st step s':>10} "
          f"{'peak MiB':>9}  check")
    for cfg in plan(device.type, args.dry):
        row = time_config(args.model, cfg, device, batch=args.batch, size=args.size,
                          steps=args.steps, warmup=1 if args.dry else 5)
        rows.append(row)
        base = rows[0]["images_per_s"]
        peak = f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "-"
        print(f"{cfg.name:<18} {row['images_per_s']:>9.1f} {row['images_per_s'] / base:>7.2f} "
              f"{row['first_step_s']:>10.2f} {peak:>9}  "
              + ("ok" if row["ok"] else f"FAILED (stuck {row['stuck']})"))
    results["speed"] = rows
    par = finetune_parity(device, epochs=args.epochs, per_class=6 if args.dry else 30,
                          compile="eager" if args.dry and device.type != "cuda" else None)
    results["parity"] = par
    print(f"parity     finetune zoonet_s fp32 vs bf16, {args.epochs} epoch(s): {par['why']}: "
          + ("ok" if par["ok"] else "FAILED"))
    ok = build["ok"] and all(r["ok"] for r in rows) and (par["ok"] or args.dry)
    results["ok"] = ok
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print("bench_cuda: " + ("all checks passed" if ok else "CHECKS FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
