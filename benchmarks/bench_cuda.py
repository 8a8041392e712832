"""The CUDA path in one short script: build on the device, a bf16 autocast training step,
throughput. For a lent GPU machine; on a machine without CUDA it says so and exits 0
(``--device cpu`` runs the same checks on the CPU as a smoke test).

    python benchmarks/bench_cuda.py [--model resnet50] [--batch 64] [--steps 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    import zoo_core

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to check (use --device cpu for a smoke run)")
        return
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ref = zoo_core.build_model(args.model, 1000, "scratch")
        path = Path(tmp) / "w.safetensors"
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
        start = time.perf_counter()
        model = zoo_core.build_model(args.model, 10, "finetune", weights=str(path),
                                     device=device)
        build_s = time.perf_counter() - start
    assert all(p.device.type == device.type for p in model.parameters())
    print(f"built {args.model} on {device} in {build_s * 1000:.0f} ms "
          f"({model.zoo.extra.get('load')})")

    opt = torch.optim.AdamW(zoo_core.param_groups(model, weight_decay=0.05), lr=1e-4)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    model.train()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = step()
    # Tensors whose gradient is exactly zero may legitimately stay put (timm zero-inits the
    # last BN of each residual block, which zeroes the gradient of the layers before it).
    moved = [n for n, p in model.named_parameters()
             if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    stuck = [n for n in moved if torch.equal(before[n], model.get_parameter(n))]
    assert not stuck, f"parameters with a gradient did not change: {stuck[:5]}"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "autocast keeps fp32 master"
    print(f"bf16 autocast step: loss {first:.4f}; {len(moved)} tensors with a gradient all "
          f"updated ({len(before) - len(moved)} had an exactly-zero gradient)")
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"throughput: {args.steps * args.batch / seconds:.1f} images/s "
          f"(batch {args.batch}, {args.size}px, bf16 autocast, {args.steps} steps)")
    if device.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB "
              f"on {torch.cuda.get_device_name(device)}")


if __name__ == "__main__":
    main()
