#!/usr/bin/env python
"""Would a short pilot scored on the validation split pick well where data is scarce?

    OMP_NUM_THREADS=1 python benchmarks/bench_auto_valpilot.py --parts tuning heldout \
        --epochs 4 8 --json out.json
    python benchmarks/bench_auto_valpilot.py --score out.json [out2.json ...]

auto pilots only where every class has ``[auto] pilot_min_per_class`` (50) training images
to hold out, so with ten images per class it decides from the probes alone, and that is
where it misses most (benchmarks/README.md). A user's data often comes with a validation
split, though (the benchmark's tasks have 30 images per class): a pilot could train on
every training image and be scored there. On the saved runs, choosing by the *full* runs'
final validation accuracy among ``linear_probe``, ``finetune`` and ``scratch`` hits far
more often than auto does, but that costs as much as trying them all.

For every scarce task-seed of the saved test-split runs (``results/bench_auto_test120_
<part>.json``; fewer than 100 images per class, not refused, not saturated) this writes the
task again as ``bench_auto.py`` did, trains ``linear_probe`` for the row's epochs (its test
accuracy must equal the saved one: the check that the task came back as it was; its
validation accuracy is then a candidate's, at about 5% of the cost of the four table
strategies) and each of ``--candidates`` for each of ``--epochs``, recording the final
validation accuracy (30 images per class, the runs' own validation split; never the test
split), the test accuracy and the time. ``--score`` reads such files and scores selection
rules on the saved full runs' *test* accuracies, with their cost as a share of training
the four table strategies (saved times; measuring included where a rule keeps auto's
measurement; the pilot's own times scaled to the saved run's clock by the two
linear_probe times). Exploratory: it decides nothing; a rule read off it needs a part that was
not looked at.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECK = "linear_probe"


def run(args: argparse.Namespace) -> int:
    import torch
    from bench_auto import saved_task, scarce_rows

    from zoo_core.train._compare import accuracy_on
    from zoo_core.train._pipeline import finetune

    torch.set_num_threads(1)
    out: dict[str, list[dict]] = {}
    if args.resume and args.json and args.json.exists():  # keep the rows already done
        out = json.loads(args.json.read_text())
    started = time.perf_counter()
    for part in args.parts:
        done = {(p["task"], p["per_class"], p["seed"]) for p in out.get(part, ())}
        out.setdefault(part, [])
        for r in scarce_rows(part):
            if (r["task"], r["per_class"], r["seed"]) in done:
                continue
            folder, test = saved_task(r)
            runs = {}
            plan = [(CHECK, r["epochs"])] + [(s, e) for s in args.candidates for e in args.epochs]
            for s, e in plan:
                t0 = time.perf_counter()
                net, res = finetune("zoonet_s", folder, strategy=s, epochs=e, seed=r["seed"],
                                    progress=False, verbose=False)
                runs[f"{s}@{e}"] = {"val": res.final_val_acc, "test": accuracy_on(net, test),
                                    "seconds": time.perf_counter() - t0}
                del net
            check = runs[f"{CHECK}@{r['epochs']}"]["test"]
            row = {"task": r["task"], "per_class": r["per_class"], "seed": r["seed"],
                   "epochs": r["epochs"], "runs": runs,
                   "reproduced": abs(check - r["accuracy"][CHECK]) < 1e-9}
            out[part].append(row)
            print(f"[{part}] {r['task']} pc={r['per_class']} seed={r['seed']}: "
                  + " ".join(f"{k} {v['val']:.3f}/{v['test']:.3f}" for k, v in runs.items())
                  + ("" if row["reproduced"] else "  NOT REPRODUCED"), flush=True)
            if args.json:
                args.json.write_text(json.dumps(out, indent=1))
    print(f"{time.perf_counter() - started:.0f} s in all")
    return 0


def choose(runs: dict[str, dict], names: list[str]) -> str:
    """The candidate with the best validation accuracy; a tie goes to the earlier name."""
    return max(names, key=lambda k: (runs[k]["val"], -names.index(k)))


def score(paths: list[Path]) -> int:
    import statistics

    from bench_auto import TABLE_STRATEGIES, saturated
    from bench_auto_rules import load_part, rule_a

    from zoo_core.registry._registry import get_registry
    from zoo_core.train._compare import score_auto

    th = get_registry().catalog.auto
    pilots: dict[tuple, dict] = {}
    for path in paths:
        for part, rows in json.loads(path.read_text()).items():
            for p in rows:
                if p["reproduced"]:
                    pilots[(part, p["task"], p["per_class"], p["seed"])] = p
    parts = sorted({k[0] for k in pilots})
    rows = [r for part in parts for r in load_part(part) or ()
            if (part, r["task"], r["per_class"], r["seed"]) in pilots and not saturated(r)
            and r["auto"] != "refused"]
    epochs = sorted({int(k.split("@")[1]) for p in pilots.values() for k in p["runs"]
                     if not k.startswith(CHECK)})
    cands = sorted({k.split("@")[0] for p in pilots.values() for k in p["runs"]
                    if not k.startswith(CHECK)})
    rules: dict[str, object] = {"A (auto now)": None, "full runs' val, table four": "full"}
    for e in epochs:
        for extra in ([c] for c in cands):
            rules[f"lp, {'/'.join(extra)}@{e}"] = (e, extra)
        rules[f"lp, {'/'.join(cands)}@{e}"] = (e, cands)
    print(f"{len(rows)} scarce task-seeds of parts {', '.join(parts)} (reproduced)")
    print(f"{'rule':<34} {'hits':>5} {'lost':>6} {'cost':>6}")
    for name, spec in rules.items():
        hits, lost, cost = 0, [], []
        for r in rows:
            p = pilots[(r["part"], r["task"], r["per_class"], r["seed"])]
            four = sum(r["seconds"][s] for s in TABLE_STRATEGIES)
            if spec is None:
                choice = rule_a(r, th)[0]
                spent = r["auto_seconds"]
            elif spec == "full":  # trying the four and keeping the best on validation
                choice = max(TABLE_STRATEGIES, key=lambda s: r["val_accuracy"][s])
                spent = four
            else:
                e, extra = spec  # type: ignore[misc]
                names = [f"{CHECK}@{p['epochs']}", *(f"{c}@{e}" for c in extra)]
                pick = choose(p["runs"], names)
                choice = pick.split("@")[0]
                # the pilot's times, put on the saved run's clock: scaled by how long the
                # saved run's linear_probe took against the same one trained here
                scale = r["seconds"][CHECK] / p["runs"][f"{CHECK}@{p['epochs']}"]["seconds"]
                spent = r["auto_seconds"] + r["seconds"][CHECK] + scale * sum(
                    p["runs"][k]["seconds"] for k in names[1:])
            hits += score_auto(choice, r["accuracy"], r["chance"])
            lost.append(max(r["accuracy"].values()) - r["accuracy"][choice])
            cost.append((spent, four))
        print(f"{name:<34} {hits:>5} {100 * statistics.fmean(lost):6.2f} "
              f"{100 * sum(c[0] for c in cost) / sum(c[1] for c in cost):5.1f}%")
    return 0


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from bench_auto import PARTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--candidates", nargs="+", default=["finetune", "partial:1", "scratch"])
    ap.add_argument("--epochs", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows the --json file already holds and do the rest")
    ap.add_argument("--score", type=Path, nargs="+", default=None, metavar="JSON",
                    help="score selection rules on files this script wrote")
    args = ap.parse_args(argv)
    if args.score:
        return score(args.score)
    if bad := [e for e in args.epochs if e < 1]:
        ap.error(f"--epochs {bad[0]}: must be at least 1")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
