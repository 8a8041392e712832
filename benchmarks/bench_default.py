#!/usr/bin/env python
"""Time the embedded default (`zoo finetune --compare`): zoonet_s on the few-shot digits
5-9 task with every strategy (linear_probe, partial:1, finetune, scratch, auto).

    python benchmarks/bench_default.py                 # 10 images per class
    python benchmarks/bench_default.py --per-class 120 # plenty of data: auto -> scratch
    python benchmarks/bench_default.py --seeds 0,1,2   # spread over seeds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoonet_s")
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)

    import torch

    from zoo_core._finetune import DEFAULT_EPOCHS, run_default

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    per_seed = []
    for seed in seeds:
        per_seed.append(run_default(args.model, per_class=args.per_class, seed=seed,
                                    epochs=args.epochs or DEFAULT_EPOCHS))
        print()
    total = time.perf_counter() - started
    if len(seeds) > 1:
        print(f"val accuracy over seeds {seeds} (mean ± stdev)")
        for i, row in enumerate(per_seed[0]):
            accs = [rows[i]["val_acc"] for rows in per_seed if rows[i]["val_acc"] is not None]
            spread = (f"{statistics.mean(accs):.3f} ± {statistics.stdev(accs):.3f}"
                      if len(accs) > 1 else "-")
            print(f"  {row['strategy']:<14} {spread}")
    print(f"total {total:.1f} s (run_default trains with 1 torch thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
