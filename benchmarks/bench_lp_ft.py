#!/usr/bin/env python
"""``lp_ft`` next to ``linear_probe`` and ``finetune`` on the embedded task (digits 5-9,
zoonet_s), 10 and 50 training images per class, seeds 0 and 1, default epochs and rates.
Prints final validation accuracy per strategy and the mean.

    python benchmarks/bench_lp_ft.py [--seeds 0,1] [--per-class 10,50]
    python benchmarks/bench_lp_ft.py --suite RUN.json   # lp_ft on bench_auto's whole suite

``--suite`` trains lp_ft on every task and seed of ``benchmarks/bench_auto.py`` (same
epochs, validation images and seeds) and sets it next to the linear_probe and finetune
accuracies of a saved ``bench_auto.py --json RUN.json`` run (the runs are deterministic
per seed, so the saved figures are what training them again gives).
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
    parser.add_argument("--suite", default=None,
                        help="a bench_auto.py --json file: run lp_ft on its tasks and seeds")
    args = parser.parse_args(argv)
    if args.suite:
        return suite(args.suite)

    from zoo_core.train import finetune

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


def suite(path: str) -> int:
    import json
    import statistics

    import torch

    from zoo_core.train._compare import run_cell

    torch.set_num_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_auto import VAL_PER_CLASS

    saved = json.loads(open(path, encoding="utf-8").read())
    cols = ("linear_probe", "finetune", "lp_ft")
    print(f"lp_ft on bench_auto's suite (zoonet_s, one thread; load average "
          f"{os.getloadavg()[0]:.1f} at start)")
    for part in ("tuning", "heldout"):
        rows = saved.get(part) or []
        if not rows:
            continue
        print(f"\n## {part}\n{'task':<16} {'pc':>4} {'seed':>4} "
              + " ".join(f"{c:>13}" for c in cols) + "  lp_ft - best of the two")
        diffs = []
        for r in rows:
            got = run_cell("zoonet_s", r["task"], r["per_class"], epochs=r["epochs"],
                           seed=r["seed"], strategies=("lp_ft",),
                           val_per_class=VAL_PER_CLASS, with_auto=False)
            accs = {**{c: r["accuracy"][c] for c in cols[:2]}, "lp_ft": got["accuracy"]["lp_ft"]}
            diff = accs["lp_ft"] - max(accs["linear_probe"], accs["finetune"])
            diffs.append(diff)
            print(f"{r['task']:<16} {str(r['per_class'] or 'all'):>4} {r['seed']:>4} "
                  + " ".join(f"{accs[c]:>13.3f}" for c in cols) + f"  {100 * diff:+.1f}",
                  flush=True)
        print(f"lp_ft minus the better of linear_probe/finetune: mean "
              f"{100 * statistics.fmean(diffs):+.2f} points, min {100 * min(diffs):+.1f}, "
              f"max {100 * max(diffs):+.1f} over {len(diffs)} task-seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
