#!/usr/bin/env python
"""torch threads for small models on CPU: zoonet_s ``finetune`` training throughput on the
embedded digits (50 images per class, 32x32) with 1, 2 and 4 threads, alternating runs,
best of ``--repeats`` per setting: what ``finetune(threads=None)`` (one thread for inputs
up to 64x64) costs or gains on the machine at hand.

    python benchmarks/bench_threads.py
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    from zoo_core.train import finetune
    from zoo_core.train._args import default_threads

    settings = [int(t) for t in args.threads.split(",")]
    best: dict[int, float] = {}
    for _ in range(args.repeats):
        for t in settings:
            _, res = finetune("zoonet_s", None, strategy="finetune", per_class=50,
                              epochs=args.epochs, threads=t, progress=False, verbose=False)
            ips = max(m.images_per_s for m in res.history)
            best[t] = max(best.get(t, 0.0), ips)
            print(f"  {t} thread(s): {ips:.0f} img/s", flush=True)
    load = os.getloadavg()
    print(f"\nzoonet_s finetune, 250 train images 32x32, batch 16, best of {args.repeats}; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f}; default_threads() = "
          f"{default_threads('zoonet_s')}")
    base = best[settings[0]]
    for t in settings:
        print(f"{t:>2} thread(s): {best[t]:7.0f} img/s  {best[t] / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
