"""Where a fast-path build's time goes: ``build_model`` of one timm arch, profiled.

Prints, in one process: its first builds one by one (with the minor page faults and system
time each took: fresh memory is faulted in page by page), then the median build time; the
file-loading floor (``safetensors.torch.load_file`` + reading every weight) and the
aligned read alone; the construction floor (``timm.create_model`` on CPU with every init
op a no-op: module construction alone, what no recorder can beat) next to the fast path's
construction on meta with its recorder; and the share of ``cProfile``'d builds spent
constructing the architecture, applying the strategy and checking the weights file.

    OMP_NUM_THREADS=1 python benchmarks/profile_build.py [--arch resnet50] [--reps 7]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import tempfile
import time


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


# In-place ops that initialisation uses (nn.init, timm's trunc_normal_): made no-ops for
# the construction floor. Values only, never shapes: construction runs as usual.
_INIT_TENSOR_OPS = ("normal_", "uniform_", "zero_", "fill_", "erfinv_", "mul_", "add_",
                    "clamp_", "random_", "exponential_")


def construct_no_init(construct):
    """``construct()`` on CPU with every init op a no-op (the construction floor)."""
    import torch
    from torch import nn

    from zoo_core.layout._meta_build import _NN_INIT_FUNCS

    saved = [(nn.init, n, getattr(nn.init, n)) for n in _NN_INIT_FUNCS]
    saved += [(torch.Tensor, n, getattr(torch.Tensor, n)) for n in _INIT_TENSOR_OPS]
    try:
        for owner, name, _ in saved:
            setattr(owner, name, lambda t, *a, **k: t)
        return construct()
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    import timm
    import torch
    from safetensors.torch import load_file, save_file

    import zoo_core
    from zoo_core.build._aligned_read import read_aligned

    torch.set_num_threads(1)
    path = os.path.join(tempfile.mkdtemp(), f"{args.arch}.safetensors")
    save_file(timm.create_model(args.arch).state_dict(), path)

    def build():
        return zoo_core.build_model(args.arch, 10, "linear_probe", weights=path)

    def floor():
        return [t.sum() for t in load_file(path).values()]

    order = []  # the first builds of this process, one by one (the first pays one-time
    for _ in range(args.reps):  # costs; the next ones show the allocator's warm-up)
        before = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        build()
        ms = (time.perf_counter() - t) * 1e3
        after = resource.getrusage(resource.RUSAGE_SELF)
        order.append((ms, after.ru_minflt - before.ru_minflt,
                      (after.ru_stime - before.ru_stime) * 1e3))
    print(f"{args.arch}: the process's first {args.reps} builds, in order (ms / page faults "
          "/ system ms): " + ", ".join(f"{ms:.0f} / {f} / {sy:.0f}" for ms, f, sy in order))
    for fn in (floor, lambda: read_aligned(path)):
        fn()  # warm-up
    print(f"{args.arch}: build {_median_ms(build, args.reps):.1f} ms, floor "
          f"{_median_ms(floor, args.reps):.1f} ms, aligned read alone "
          f"{_median_ms(lambda: read_aligned(path), args.reps):.1f} ms "
          f"(median of {args.reps}, one process)")
    from zoo_core.layout._meta_build import _construct_on_meta

    def construct():
        return timm.create_model(args.arch, num_classes=10)

    construct_no_init(construct), _construct_on_meta(construct)  # warm-up
    print(f"  construction floor (CPU, every init op a no-op) "
          f"{_median_ms(lambda: construct_no_init(construct), args.reps):.1f} ms; on meta "
          f"with the recorder {_median_ms(lambda: _construct_on_meta(construct), args.reps):.1f}"
          " ms")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        build()
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    total = max(ct for (_, _, fn), (_, _, _, ct, _) in stats.items() if fn == "build_model")
    for label, func in (("construct the architecture (meta)", "_construct_on_meta"),
                        ("apply the strategy", "apply_strategy"),
                        ("check the weights file", "_fetch")):
        ct = max((v[3] for (_, _, fn), v in stats.items() if fn == func), default=0.0)
        print(f"  {label:36s} {100 * ct / total:5.1f}% of 3 profiled builds")


if __name__ == "__main__":
    main()
