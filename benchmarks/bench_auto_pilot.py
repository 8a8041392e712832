#!/usr/bin/env python
"""Would a longer pilot pick better? auto's pilots of saved ``bench_auto.py`` runs, redone.

    OMP_NUM_THREADS=1 python benchmarks/bench_auto_pilot.py --fraction 0.5 --json out.json
    python benchmarks/bench_auto_pilot.py --score out.json   # what auto would have scored

For every task-seed of the saved test-split runs (``results/bench_auto_test120_<part>.json``)
where auto piloted two strategies to train, the task is written again exactly as
``bench_auto.py`` wrote it (same seed, same 30 + 120 validation images per class; the test
split set aside), auto measures again (seeded: the same figures and the same candidates,
checked) and pilots with ``[auto] pilot_fraction`` set to ``--fraction``. Its choice is
scored on the saved test accuracies of the two candidates: right where it is within 2
points of the better one. Printed per task-seed: the saved pilot (the fraction of the
saved run, 0.25) and the new one, their picks, and the candidates' test accuracies; then
how often each picked right and what the pilots cost as a share of training the four table
strategies on those task-seeds (the saved runs' times). ``--score`` reads such a file back
and prints, per part, auto's hits and decision cost (over the non-saturated task-seeds, as
``bench_auto.py`` counts them) with the saved pilots and with the redone ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("tuning", "heldout", "fresh", "fresh2", "fresh3")
TABLE = ("linear_probe", "partial:1", "finetune", "scratch")


def piloted(row: dict) -> bool:
    pilot = (row.get("figures") or {}).get("pilot") or {}
    return row["auto"] != "refused" and len(pilot.get("accuracy") or {}) >= 2


def right(pick: str, candidates: list[str], test: dict[str, float]) -> bool:
    return test[pick] >= max(test[c] for c in candidates) - 0.02


def redo(row: dict, epochs: int) -> dict:
    """Write the row's task again, measure and pilot under the current registry."""
    from bench_auto import saved_task_folder

    from zoo_core.train._auto import _decide
    from zoo_core.train._pipeline import finetune
    from zoo_core.train._runners import make_pilot
    from zoo_core.train._utils import _Printer

    seed = row["seed"]
    folder = saved_task_folder(row)
    started = time.perf_counter()
    choice, _, _, figures = _decide(
        "zoonet_s", folder, weights="default", seed=seed, force=False, device="cpu",
        num_workers=0, say=_Printer(False), epochs=epochs,
        pilot=make_pilot(finetune, "zoonet_s", seed=seed, weights="default"))
    return {"choice": choice, "pilot": figures.get("pilot") or {},
            "seconds": time.perf_counter() - started}


def score(path: Path) -> int:
    """Per part: auto's hits and decision cost with the saved pilots, then with the redone
    pilots of ``path`` (every other task-seed as saved)."""
    from bench_auto import saturated

    from zoo_core.train._compare import score_auto

    saved = json.loads(path.read_text())
    redone = {(r["part"], r["task"], r["per_class"], r["seed"]): r for r in saved["rows"]}
    print(f"pilot_fraction 0.25 -> {saved['fraction']:g} ({path.name}): auto hits, decision "
          "cost (% of training the four table strategies)")
    totals = [0, 0, 0]
    for part in PARTS:
        rows = json.loads((HERE / "results" / f"bench_auto_test120_{part}.json").read_text())
        n = hits = new_hits = 0
        cost = new_cost = table = 0.0
        for r in (r for r in rows[part] if not saturated(r)):
            new = redone.get((part, r["task"], r["per_class"], r["seed"]))
            pick = new["new"]["pick"] if new else r["auto"]
            n += 1
            hits += score_auto(r["auto"], r["accuracy"], r["chance"])
            new_hits += score_auto(pick, r["accuracy"], r["chance"])
            table += sum(r["seconds"][s] for s in TABLE)
            cost += r["auto_seconds"]
            new_cost += r["auto_seconds"] + (
                new["new"]["seconds"] - new["saved"]["seconds"] if new else 0.0)
        totals = [totals[0] + hits, totals[1] + new_hits, totals[2] + n]
        print(f"  {part:<8} hits {hits:>2} -> {new_hits:>2} of {n:>2}; decision cost "
              f"{100 * cost / table:4.1f}% -> {100 * new_cost / table:4.1f}%")
    print(f"  {'all':<8} hits {totals[0]:>2} -> {totals[1]:>2} of {totals[2]}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fraction", type=float, default=None,
                    help="[auto] pilot_fraction for the redone pilots (saved runs: 0.25)")
    ap.add_argument("--score", type=Path, default=None, metavar="FILE",
                    help="print what auto would have scored with a --json file's pilots")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    if args.score:
        return score(args.score)
    if args.fraction is None:
        ap.error("--fraction is required (or --score FILE)")
    if not 0 < args.fraction <= 1:
        ap.error(f"--fraction {args.fraction}: must be within (0, 1]")
    # the registry override: a user registry.toml with the one [auto] key changed
    user = Path(tempfile.mkdtemp(prefix="zoo-pilot-")) / "registry.toml"
    user.write_text(f"[auto]\npilot_fraction = {args.fraction}\n")
    os.environ["ZOO_CORE_REGISTRY"] = str(user)
    import torch

    from zoo_core.registry._registry import get_registry, reset_registry

    reset_registry()
    assert get_registry().catalog.auto.pilot_fraction == args.fraction
    torch.set_num_threads(args.threads)
    out, n, old_right, new_right, old_cost, new_cost, table = [], 0, 0, 0, 0.0, 0.0, 0.0
    print(f"{'part':<8} {'task':<20} {'pc':>4} {'seed':>4}  {'saved pilot (0.25)':<34} "
          f"{f'pilot ({args.fraction:g})':<34} test")
    for part in args.parts:
        rows = json.loads((HERE / "results" / f"bench_auto_test120_{part}.json").read_text())
        for r in (r for r in rows[part] if piloted(r)):
            old = r["figures"]["pilot"]
            new = redo(r, r["epochs"])
            cands = list(old["candidates"])
            if sorted(new["pilot"].get("candidates") or []) != sorted(cands):
                print(f"{part} {r['task']} seed {r['seed']}: the decision differs from the "
                      f"saved run's ({new['pilot']}); skipped", file=sys.stderr)
                continue
            test = {c: r["accuracy"][c] for c in cands}
            n += 1
            old_right += right(r["auto"], cands, test)
            new_right += right(new["choice"], cands, test)
            old_cost += old["seconds"]
            new_cost += new["pilot"]["seconds"]
            table += sum(r["seconds"][s] for s in TABLE)

            def fmt(pick: str, accs: dict, cands: list[str] = cands) -> str:
                return f"{pick} ({', '.join(f'{accs[c]:.3f}' for c in cands)})"

            print(f"{part:<8} {r['task']:<20} {str(r['per_class']):>4} {r['seed']:>4}  "
                  f"{fmt(r['auto'], old['accuracy']):<34} "
                  f"{fmt(new['choice'], new['pilot']['accuracy']):<34} "
                  + ", ".join(f"{c} {test[c]:.3f}" for c in cands), flush=True)
            out.append({"part": part, "task": r["task"], "per_class": r["per_class"],
                        "seed": r["seed"], "candidates": cands, "test": test,
                        "saved": {"pick": r["auto"], "accuracy": old["accuracy"],
                                  "seconds": old["seconds"]},
                        "new": {"pick": new["choice"], "accuracy": new["pilot"]["accuracy"],
                                "seconds": new["pilot"]["seconds"],
                                "epochs": new["pilot"]["epochs"]}})
            if args.json:
                args.json.write_text(json.dumps({"fraction": args.fraction, "rows": out},
                                                indent=1))
    if not n:
        print("no piloted task-seed in these parts")
        return 0
    print(f"\n{n} piloted task-seeds: the saved pilots (fraction 0.25) picked right on "
          f"{old_right}, the redone ones (fraction {args.fraction:g}) on {new_right}; pilot "
          f"cost {100 * old_cost / table:.1f}% -> {100 * new_cost / table:.1f}% of training "
          "the four table strategies on these task-seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
