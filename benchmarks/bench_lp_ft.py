#!/usr/bin/env python
"""``lp_ft`` next to ``linear_probe`` and ``finetune`` on the embedded task (digits 5-9,
zoonet_s), 10 and 50 training images per class, seeds 0 and 1, default epochs and rates.
Prints final validation accuracy per strategy and the mean.

    python benchmarks/bench_lp_ft.py [--seeds 0,1] [--per-class 10,50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

STRATEGIES = ("linear_probe", "finetune", "lp_ft")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--per-class", default="10,50")
    args = parser.parse_args(argv)

    from zoo_core._finetune import finetune

    rows = []
    for pc in (int(p) for p in args.per_class.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            accs, secs = {}, {}
            for s in STRATEGIES:
                t = time.perf_counter()
                _, res = finetune("zoonet_s", None, strategy=s, per_class=pc, seed=seed,
                                  threads=1, progress=False, verbose=False)
                accs[s], secs[s] = res.final_val_acc, time.perf_counter() - t
            rows.append((pc, seed, accs, secs))
            print(f"  {pc}/class seed {seed}: " + ", ".join(
                f"{s} {accs[s]:.3f} ({secs[s]:.0f}s)" for s in STRATEGIES), flush=True)
    print(f"\nfinal val accuracy, zoonet_s on embedded digits 5-9 (179 val images); load "
          f"average {os.getloadavg()[0]:.1f}")
    print(f"{'per class':>9} {'seed':>4} " + " ".join(f"{s:>13}" for s in STRATEGIES))
    for pc, seed, accs, _ in rows:
        print(f"{pc:>9} {seed:>4} " + " ".join(f"{accs[s]:>13.3f}" for s in STRATEGIES))
    print(f"{'mean':>14} " + " ".join(
        f"{sum(r[2][s] for r in rows) / len(rows):>13.3f}" for s in STRATEGIES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
