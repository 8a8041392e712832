#!/usr/bin/env python
"""One more strategy on the saved test-split task-seeds of ``bench_auto.py``.

    OMP_NUM_THREADS=1 python benchmarks/bench_auto_more.py --strategy lp_ft \
        --parts tuning heldout --json out.json

For every non-saturated task-seed of the saved runs (``results/bench_auto_test120_
<part>.json``) this writes the task again as ``bench_auto.py`` did (same seed, same
training, validation and test images), trains ``--strategy`` with the row's epochs and
scores it on the row's test split. ``linear_probe`` trains too, as a check that the task
came back as it was: its test accuracy must equal the saved one (the runs are
deterministic per seed on one thread); a row where it does not is reported and left out.
Printed per task-seed: the saved strategies' accuracies, the new one's and its points
behind the best saved one. ``bench_auto_rules.py`` reads the ``--json`` file as one more
fixed strategy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECK = "linear_probe"


def rows_of(part: str) -> list[dict]:
    """The saved test-split run's non-saturated task-seeds of ``part``."""
    from bench_auto import saturated

    path = HERE / "results" / f"bench_auto_test120_{part}.json"
    return [r for r in json.loads(path.read_text())[part] if not saturated(r)]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from bench_auto import PARTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", default="lp_ft")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--task", default=None, metavar="NAME", help="only this task's rows")
    ap.add_argument("--seed", type=int, default=None, help="only this seed's rows")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    if args.strategy == CHECK:
        ap.error(f"--strategy {CHECK}: is the reproduction check; name another one")
    from zoo_core.strategies._strategies import parse_strategy

    try:
        parse_strategy(args.strategy)
    except ValueError as e:
        ap.error(f"--strategy {args.strategy}: {e}")

    import torch
    from bench_auto import saved_task

    from zoo_core.train._compare import accuracy_on
    from zoo_core.train._pipeline import finetune

    torch.set_num_threads(1)
    out: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for part in args.parts:
        if not (HERE / "results" / f"bench_auto_test120_{part}.json").exists():
            print(f"[{part}] no saved run (results/bench_auto_test120_{part}.json): skipped")
            continue
        out[part] = []
        for r in rows_of(part):
            if args.task not in (None, r["task"]) or args.seed not in (None, r["seed"]):
                continue
            folder, test = saved_task(r)
            got, secs = {}, {}
            for s in (CHECK, args.strategy):
                t0 = time.perf_counter()
                net, _ = finetune("zoonet_s", folder, strategy=s, epochs=r["epochs"],
                                  seed=r["seed"], progress=False, verbose=False)
                got[s] = accuracy_on(net, test)
                secs[s] = time.perf_counter() - t0
                del net
            same = abs(got[CHECK] - r["accuracy"][CHECK]) < 1e-9
            best = max(r["accuracy"].values())
            row = {"task": r["task"], "per_class": r["per_class"], "seed": r["seed"],
                   "accuracy": got[args.strategy], "seconds": secs[args.strategy],
                   "check": got[CHECK], "reproduced": same}
            out[part].append(row)
            print(f"[{part}] {r['task']} pc={r['per_class'] or 'all'} seed={r['seed']}: "
                  + " ".join(f"{s} {a:.3f}" for s, a in r["accuracy"].items())
                  + f" | {args.strategy} {got[args.strategy]:.3f} "
                  f"({100 * (got[args.strategy] - best):+.1f} vs best)"
                  + ("" if same else f"  NOT REPRODUCED ({CHECK} {got[CHECK]:.3f})"),
                  flush=True)
            if args.json:
                args.json.write_text(json.dumps({"strategy": args.strategy, **out}, indent=1))
    print(f"{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
