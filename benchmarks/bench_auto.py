#!/usr/bin/env python
"""Does ``auto`` pick well? Every strategy and ``auto`` on a suite of offline tasks.

    python benchmarks/bench_auto.py                       # the whole suite, 3 seeds
    python benchmarks/bench_auto.py --part heldout        # only the held-out tasks
    python benchmarks/bench_auto.py --part tuning --task glyph-groups  # ... or some tasks
    python benchmarks/bench_auto.py --json out.json       # also keep every figure
    python benchmarks/bench_auto.py --replay out.json     # re-score a saved run's measurements
                                                          # with the current [auto] thresholds
    python benchmarks/bench_auto.py --test-per-class 120  # score on a larger test split
    python benchmarks/bench_auto.py --replay out.json --scored-on val  # ... or on validation

Tasks are embedded (``zoo_core.data._embedded``): scikit-learn digits, glyph classes held out of
the zoonet pretraining, procedural textures, band-passed noise, and random labels; scarce
(10 images per class) and plenty (100+). Issue 21 added harder ones (``bench_auto_tasks.py``,
64 px): shapes drawn on crops of scikit-learn's sample photos, photo rotation (plenty +
dissimilar), input-level shifts of the digits (inverted contrast, blur, colour, rotation)
and an output-level shift (new groupings of pretraining glyph classes). The suite is split
once, by task, into a
**tuning** part (the [auto] thresholds in registry.toml were chosen looking at it) and a
**held-out** part (never looked at while tuning); thirteen **fresh** parts (``fresh``,
``fresh2`` ... ``fresh13``; stops 19, 21, 22, 23, 24 and 25) add task families no rule had
been tuned or checked on when each first ran. Each part is reported on its own; benchmarks/README.md
says which rule each one tested.

For each task and seed every strategy trains with the same seed and epochs, ``auto``
measures (and pilots, where it does) and is scored with the accuracy of the strategy it
chose. A hit: within 2 points of the best strategy, or a refusal where no strategy beats
chance by 10 points. A task-seed where every strategy lands within 1 point of the others is
**saturated**: it cannot tell strategies apart, so it is listed separately and left out of
the hit rate. Reported per part (non-saturated task-seeds): hits, the same for every fixed
strategy, mean points lost against the best, refusals where the best beat chance by 10+
points, and auto's cost (its measurement + pilot time) as a fraction of training the four
table strategies. ``first:1`` (surgical, issue 21) and ``lp_ft`` (since stop 23; on the
earlier parts ``bench_auto_more.py`` trained it afterwards) train too, to see where they
win; auto does not pick them, and they count in "the best".

``--test-per-class N`` (stop 20): with 30 validation images per class one strategy's figure
moves by several points between seeds, and the best of five such figures is a lottery that
no rule can win 90% of the time. With N, every task is written with 30 + N validation
images per class: the runs validate on the first 30 (as before: same per-epoch cost), and
every strategy's final model is scored on the other N, which no run sees
(``zoo_core.train._compare.run_cell``). Hits, losses and saturation are then counted on
those test accuracies; the 30-image figures stay in the JSON as ``val_accuracy``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# (task, training images per class, epochs); plenty tasks train fewer epochs (more steps each).
# Tasks from bench_auto_tasks.py are 64 px; the others embedded 32 px.
TUNING = (
    ("digits5-9", 10, 30),
    ("textures", 10, 30),
    ("random-labels", 10, 30),
    ("digits5-9", None, 10),
    ("photo-shapes", 80, 10),
    ("digits-inverted", 10, 30),
    ("glyph-groups", 10, 30),
    ("photo-rotation", 150, 10),
)
HELDOUT = (
    ("digits0-4", 10, 30),
    ("random-labels", 5, 30),
    ("textures", 100, 10),
    ("photo-shapes", 25, 30),
    ("digits-blur", 10, 30),
    ("digits-colour", 10, 30),
    ("digits-rotated", 10, 30),
    ("glyph-groups", 100, 10),
    ("photo-rotation", 100, 10),
)
# Added at stop 19, after the held-out part had been seen (and the refusal rule changed
# with it in view): task families no rule was tuned or checked on, run once rules were set.
FRESH = (
    ("photo-quadrant", 30, 30),
    ("photo-count", 40, 30),
    ("random-labels", 20, 30),
    ("digits0-4-noise", 10, 30),
    ("digits0-4-edges", 10, 30),
    ("photo-scale", 100, 10),
)
# Added at stop 21 and run before any rule of that stop changed (both earlier parts had been
# seen by then): new task families, scored on a test split from their first run.
FRESH2 = (
    ("digits0-4-small", 10, 30),
    ("digits0-4-occluded", 10, 30),
    ("digits-on-photo", 20, 30),
    ("photo-sharpness", 60, 30),
    ("photo-stripes", 100, 10),
    ("photo-swap", 100, 10),
)
# Added at stop 21 after fresh2 had run, with the rule it tests written down first (the
# commit that added it): six more new families, run once with the rules as they were.
FRESH3 = (
    ("digits5-9-bold", 10, 30),
    ("digits5-9-mirrored", 10, 30),
    ("photo-noise-level", 60, 30),
    ("photo-disk-size", 40, 30),
    ("photo-same-different", 100, 10),
    ("photo-colour-cast", 100, 10),
)
# Added at stop 21 with the stage-0 rule it tests written down first (the commit that added
# it): scarce glyph tasks, input-level shifts of known classes and one output-level regrouping.
FRESH4 = (
    ("glyphs-inverted", 10, 30),
    ("glyphs-noisy", 10, 30),
    ("glyphs-on-photo", 10, 30),
    ("glyphs-small", 10, 30),
    ("glyph-pairs", 10, 30),
)
# Added at stop 22 after candidate A became the rule, and run before any rule changed:
# new families (bench_auto_tasks_stop22.py) that test the rules as they stand.
FRESH5 = (
    ("glyphs-blurred", 10, 30),
    ("glyphs-thin", 10, 30),
    ("glyph-triples", 10, 30),
    ("digits0-4-jpeg", 10, 30),
    ("photo-brightness", 60, 30),
    ("photo-shape-colour", 100, 10),
)
# Added at stop 22 after candidate C and its criterion were committed (bench_auto_rules.py),
# and run with the rules unchanged: it decides between A and C.
FRESH6 = (
    ("digits5-9-shifted", 10, 30),
    ("glyphs-sheared", 10, 30),
    ("glyphs-faint", 10, 30),
    ("digits0-4-dotted", 10, 30),
    ("photo-which", 20, 30),
    ("photo-tiling", 30, 30),
)
# Added at stop 22 after candidate D and its criterion were committed (bench_auto_rules.py),
# and run with the rules unchanged: it decides between A and D.
FRESH7 = (
    ("glyph-halves", 10, 30),
    ("digit-pairs", 10, 30),
    ("glyphs-colour", 10, 30),
    ("glyphs-salt", 10, 30),
    ("glyphs-shifted", 10, 30),
    ("glyphs-bold", 10, 30),
)
# Added at stop 22 after fresh7 had run, with no rule changed: more unseen task-seeds for
# the estimate, and stop 21's candidate B tested under a criterion committed with it.
FRESH8 = (
    ("glyphs-rotated", 10, 30),
    ("digits5-9-gamma", 10, 30),
    ("glyph-one-vs-six", 10, 30),
    ("photo-hue", 40, 30),
    ("photo-blocky", 60, 30),
    ("photo-outlines", 100, 10),
)
# Added at stop 23 while lp_ft trained on the ten parts above (bench_auto_more.py), before
# any of its results were read, with no rule changed: it decided candidate V
# (bench_auto_rules.py), committed with its criterion before this part's first run.
FRESH9 = (
    ("glyphs-embossed", 10, 30),
    ("digits0-4-checker", 10, 30),
    ("glyph-uneven", 10, 30),
    ("photo-motion", 40, 30),
    ("photo-contrast", 50, 30),
    ("photo-arrows", 100, 10),
)
# Added at stop 24, written blind to any result of this stop, with no rule changed:
# six more new families (bench_auto_tasks_stop24.py).
FRESH10 = (
    ("glyphs-wavy", 10, 30),
    ("digits5-9-ghosted", 10, 30),
    ("digits-loops", 10, 30),
    ("photo-light", 40, 30),
    ("photo-symmetry", 50, 30),
    ("photo-inside", 100, 10),
)
# Added at stop 24 after fresh10 had run, written blind to any result, with no rule changed
# by this commit: six more new families (bench_auto_tasks_stop24b.py).
FRESH11 = (
    ("glyphs-squashed", 10, 30),
    ("digits5-9-keystone", 10, 30),
    ("digits-parity", 10, 30),
    ("photo-saturation", 40, 30),
    ("photo-near-far", 50, 30),
    ("photo-filled", 100, 10),
)
# Added at stop 24 after fresh11 had run, written blind to any result, with no rule changed
# by this commit: six more new families (bench_auto_tasks_stop24c.py).
FRESH12 = (
    ("glyphs-hollow", 10, 30),
    ("digits0-4-fisheye", 10, 30),
    ("digits-mod3", 10, 30),
    ("photo-posterize", 40, 30),
    ("photo-left-of", 50, 30),
    ("photo-fringes", 100, 10),
)
# Added at stop 25, written blind to any result, with no rule changed by this commit: six
# more new families (bench_auto_tasks_stop25.py).
FRESH13 = (
    ("glyphs-swirled", 10, 30),
    ("digits5-9-elastic", 10, 30),
    ("digits-primes", 10, 30),
    ("photo-vignette", 40, 30),
    ("photo-largest-colour", 50, 30),
    ("photo-crossing", 100, 10),
)
PARTS = {"tuning": TUNING, "heldout": HELDOUT, "fresh": FRESH, "fresh2": FRESH2,
         "fresh3": FRESH3, "fresh4": FRESH4, "fresh5": FRESH5,
         "fresh6": FRESH6, "fresh7": FRESH7,
         "fresh8": FRESH8, "fresh9": FRESH9, "fresh10": FRESH10, "fresh11": FRESH11,
         "fresh12": FRESH12, "fresh13": FRESH13}
VAL_PER_CLASS = 30
TABLE_STRATEGIES = ("linear_probe", "partial:1", "finetune", "scratch")
STRATEGIES = (*TABLE_STRATEGIES, "first:1", "lp_ft")
SATURATED_POINTS = 0.01  # every strategy within this of the others: cannot tell them apart


def saved_task_folder(row: dict) -> object:
    """The training and validation images a saved ``--test-per-class`` row trained on,
    written again exactly as the run wrote them (seeded), its test split set aside."""
    return saved_task(row)[0]


def saved_task(row: dict) -> tuple:
    """``(folder, test)``: a saved ``--test-per-class`` row's training and validation
    images and its test split, written again exactly as the run wrote them (seeded)."""
    from bench_auto_tasks import write_task
    from bench_auto_tasks_stop25 import TASKS as EXTRA

    from zoo_core.data._data import scan_image_folder
    from zoo_core.data._embedded import embedded_task
    from zoo_core.train._compare import _split_test
    from zoo_core.weights._weights import cache_dir

    task, per_class, seed = row["task"], row["per_class"], row["seed"]
    val = VAL_PER_CLASS + row["num_test"] // row["figures"]["num_classes"]
    root = (write_task(task, per_class, seed=seed, val_per_class=val,
                       cache=cache_dir() / "datasets") if task in EXTRA
            else embedded_task(task, per_class, seed=seed, val_per_class=val))
    return _split_test(scan_image_folder(root, seed=seed, warn=False), VAL_PER_CLASS)


def saturated(row: dict) -> bool:
    accs = row["accuracy"].values()
    return max(accs) - min(accs) <= SATURATED_POINTS


def scarce_rows(part: str) -> list[dict]:
    """The saved test-split run's scarce task-seeds of ``part`` (fewer than 100 images per
    class) that auto did not refuse and that tell strategies apart (not saturated)."""
    path = Path(__file__).resolve().parent / "results" / f"bench_auto_test120_{part}.json"
    return [r for r in json.loads(path.read_text())[part]
            if (r["figures"].get("per_class") or 0) < 100 and r["auto"] != "refused"
            and not saturated(r)]


def hindsight(rows: list[dict], strategies: tuple[str, ...]) -> tuple[int, float]:
    """A ceiling for any rule that decides per task: per (task, images per class), the one
    strategy of ``strategies`` best on average over the seeds, *chosen on the scored results
    themselves* (validation, or the test split); its hits and mean points lost on the
    non-saturated ``rows``."""
    from zoo_core.train._compare import score_auto

    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["task"], r["per_class"]), []).append(r)
    hits, lost = 0, []
    for group in by.values():
        have = [s for s in strategies if all(s in r["accuracy"] for r in group)]
        pick = max(have, key=lambda s: statistics.fmean(r["accuracy"][s] for r in group))
        for r in group:
            if not saturated(r):
                hits += score_auto(pick, r["accuracy"], r["chance"])
                lost.append(max(r["accuracy"].values()) - r["accuracy"][pick])
    return hits, 100 * statistics.fmean(lost) if lost else 0.0


def summarise(rows: list[dict]) -> dict:
    """Figures over the non-saturated ``rows`` (module doc)."""
    from zoo_core.train._compare import score_auto

    all_rows, rows = rows, [r for r in rows if not saturated(r)]
    if not rows:
        return {"task_seeds": 0}
    lost, wrong_refusals, hits = [], 0, 0
    auto_s = sum(r["auto_seconds"] for r in rows)
    all_s = sum(sum(r["seconds"].get(s, 0.0) for s in TABLE_STRATEGIES) for r in rows)
    chosen_s = sum(r["seconds"].get(r["auto"], 0.0) for r in rows)
    fixed = {s: sum(score_auto(s, r["accuracy"], r["chance"]) for r in rows)
             for s in STRATEGIES if all(s in r["accuracy"] for r in rows)}
    for r in rows:
        best = max(r["accuracy"].values())
        hit = score_auto(r["auto"], r["accuracy"], r["chance"])
        hits += hit
        if r["auto"] == "refused":
            lost.append(0.0 if hit else best - r["chance"])
            wrong_refusals += best - r["chance"] >= 0.10
        else:
            lost.append(best - r["accuracy"][r["auto"]])
    return {"task_seeds": len(rows), "hits": hits, "hit_rate": hits / len(rows),
            "hindsight_table": hindsight(all_rows, TABLE_STRATEGIES),
            "hindsight_all": hindsight(all_rows, STRATEGIES),
            "fixed_hits": fixed,
            "mean_points_lost": 100 * statistics.fmean(lost), "max_points_lost":
            100 * max(lost), "wrong_refusals_10": wrong_refusals,
            "decision_cost_fraction": auto_s / all_s,
            "decision_plus_run_fraction": (auto_s + chosen_s) / all_s}


def print_rows(rows: list[dict], title: str) -> None:
    print(f"\n## {title}")
    head = " ".join(f"{s:>12}" for s in STRATEGIES)
    print(f"{'task':<16} {'pc':>4} {'seed':>4} {head} {'auto':>13} {'cell':<22} hit")
    for sat in (False, True):
        part = [r for r in rows if saturated(r) is sat]
        if sat and part:
            print(f"-- saturated (every strategy within {100 * SATURATED_POINTS:.0f} point): "
                  "not in the hit rate")
        for r in part:
            best = max(r["accuracy"].values())
            cells = " ".join(
                f"{r['accuracy'][s]:>11.3f}{'*' if r['accuracy'][s] == best else ' '}"
                if s in r["accuracy"] else f"{'-':>12}" for s in STRATEGIES)
            print(f"{r['task']:<16} {str(r['per_class'] or 'all'):>4} {r['seed']:>4} {cells} "
                  f"{r['auto']:>13} {r['cell']:<22} {'✓' if r['hit'] else '✗'} "
                  f"{r.get('note', '')}".rstrip())
    s = summarise(rows)
    if not s["task_seeds"]:
        print("every task-seed saturated: nothing to score")
        return
    fixed = ", ".join(f"{k} {v}" for k, v in s["fixed_hits"].items())
    print(f"non-saturated: auto hits {s['hits']}/{s['task_seeds']} "
          f"({100 * s['hit_rate']:.0f}%; fixed strategies: {fixed}), mean "
          f"{s['mean_points_lost']:.2f} points lost (max {s['max_points_lost']:.1f}), "
          f"{s['wrong_refusals_10']} refusal(s) where the best beat chance by 10+ points; "
          f"decision cost {100 * s['decision_cost_fraction']:.1f}% of training the four "
          f"table strategies ({100 * s['decision_plus_run_fraction']:.1f}% with auto's "
          "own run)")
    (th, tl), (ah, al) = s["hindsight_table"], s["hindsight_all"]
    print(f"ceiling for a per-task rule: the strategy best on average over the seeds, chosen "
          f"in hindsight on the scored results themselves, hits {th}/{s['task_seeds']} "
          f"({tl:.2f} points lost; {ah}/{s['task_seeds']}, {al:.2f} with every strategy trained)")


def replay(rows: list[dict]) -> list[dict]:
    """Re-decide from saved measurements with the current thresholds. A pilot the saved run
    made (the same candidates, in any order) is re-read; one it did not make is settled by
    its first candidate -- for a refusal's pilot: assumed to find the signal -- marked
    ``pilot?`` in the table, and its cost estimated as ``pilot_fraction`` of the epochs on
    80% of the images for each candidate (from the saved training times)."""
    from zoo_core.registry._registry import get_registry
    from zoo_core.strategies._decide import decide
    from zoo_core.train._compare import score_auto
    from zoo_core.train._evidence import p_value

    th = get_registry().catalog.auto
    out = []
    for r in rows:
        f = r["figures"]
        if not f.get("random"):
            out.append(r)
            continue
        pre = f.get("pretrained")
        spread = max(f["random"]["std"], pre["std"] if pre else 0.0)
        d = decide(per_class=f["per_class"], chance=f["chance"],
                   probe_pretrained=pre["mean"] if pre else None,
                   probe_random=f["random"]["mean"], spread=spread, thresholds=th,
                   spread_pretrained=pre["std"] if pre else None,
                   spread_random=f["random"]["std"], folds=f["random"]["folds"],
                   evidence=f.get("evidence") or None)
        choice = "refused" if d.strategy == "refuse" else d.strategy
        pilot = f.get("pilot") or {}
        note, seconds = "", r["auto_seconds"]
        saved_pilot = pilot.get("seconds", 0.0) if "accuracy" in pilot else 0.0
        if d.pilot and f["min_per_class"] >= th.pilot_min_per_class:
            if set(pilot.get("candidates") or ()) == set(d.pilot):
                accs = pilot["accuracy"]
                best = max(d.pilot, key=lambda s: accs[s] - (0.01 if s != d.pilot[0] else 0))
                if d.strategy != "refuse":
                    choice = best
                elif "evidence" in pilot:  # the saved pilot's own holdout test
                    p = pilot["evidence"]["p"]
                else:  # older figures: the holdout taken as balanced
                    n, chance = pilot["holdout"], f["chance"]
                    sd = (chance * (1 - chance) / n) ** 0.5
                    p = p_value(max(accs.values()), chance, sd)[1] * len(d.pilot)
                if d.strategy == "refuse":
                    choice = best if p < th.refuse_p else "refused"
            else:
                choice, note = d.pilot[0], "pilot?"
                seconds += -saved_pilot + sum(
                    th.pilot_fraction * 0.8 * r["seconds"].get(s, 0.0) for s in d.pilot)
        elif saved_pilot:
            seconds -= saved_pilot  # the saved run piloted; the current rules would not
        out.append({**r, "auto": choice, "cell": d.cell, "note": note,
                    "auto_seconds": seconds,
                    "hit": score_auto(choice, r["accuracy"], r["chance"])})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoonet_s")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--part", choices=("all", *PARTS), default="all")
    ap.add_argument("--task", nargs="+", default=None, metavar="NAME",
                    help="run only these tasks of the chosen part(s)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--test-per-class", type=int, default=0, metavar="N",
                    help="score every strategy on N more images per class that no run "
                    f"validates on (the runs still validate on {VAL_PER_CLASS} per class)")
    ap.add_argument("--replay", type=Path, default=None,
                    help="re-score a saved --json run with the current thresholds")
    ap.add_argument("--scored-on", choices=("test", "val"), default="test",
                    help="with --replay of a --test-per-class run: score on the test split "
                    f"(default) or on the runs' own {VAL_PER_CLASS} validation images")
    args = ap.parse_args()

    if args.replay:
        saved = json.loads(args.replay.read_text())
        for part in PARTS:
            rows = saved.get(part) or []
            if args.scored_on == "val" and rows:
                if not all("val_accuracy" in r for r in rows):
                    ap.error(f"{args.replay}: part {part!r} has no test split (run without "
                             "--test-per-class): its accuracies are validation ones already")
                rows = [{**r, "accuracy": r["val_accuracy"]} for r in rows]
            if rows:
                on = (" on the runs' validation images" if args.scored_on == "val" else "")
                print_rows(replay(rows), f"{part} (replayed with current thresholds{on})")
        return 0

    import torch
    from bench_auto_tasks import write_task
    from bench_auto_tasks_stop25 import TASKS as EXTRA

    from zoo_core.train._compare import run_cell
    from zoo_core.weights._weights import cache_dir

    torch.set_num_threads(args.threads)
    parts = dict(PARTS)
    if args.part != "all":
        parts = {args.part: parts[args.part]}
    if args.task:
        known = {t for tasks in parts.values() for t, _, _ in tasks}
        if unknown := sorted(set(args.task) - known):
            ap.error(f"--task {' '.join(unknown)}: not in part {args.part!r}; its tasks: "
                     + ", ".join(sorted(known)))
        parts = {p: tuple(t for t in tasks if t[0] in args.task)
                 for p, tasks in parts.items()}
    started = time.perf_counter()
    results: dict[str, list[dict]] = {}
    for part, tasks in parts.items():
        rows = []
        for task, per_class, epochs in tasks:
            for seed in args.seeds:
                t0 = time.perf_counter()
                root = None
                if task in EXTRA:
                    root = write_task(task, per_class, seed=seed,
                                      val_per_class=VAL_PER_CLASS + args.test_per_class,
                                      cache=cache_dir() / "datasets")
                row = run_cell(args.model, task, per_class, epochs=epochs, seed=seed,
                               strategies=STRATEGIES, val_per_class=VAL_PER_CLASS, root=root,
                               test_per_class=args.test_per_class)
                row["seed"], row["epochs"] = seed, epochs
                rows.append(row)
                print(f"  [{part}] {task} pc={per_class or 'all'} seed={seed}: "
                      + ", ".join(f"{s} {a:.3f}" for s, a in row["accuracy"].items())
                      + f"; auto {row['auto']} ({time.perf_counter() - t0:.0f}s)",
                      file=sys.stderr, flush=True)
        results[part] = rows
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
    scored = (f"; accuracies on a test split of {args.test_per_class} images per class"
              if args.test_per_class else "")
    for part, rows in results.items():
        print_rows(rows, f"{part} part ({len(rows)} task-seeds{scored})")
    print(f"\n{args.model}, seeds {args.seeds}, {args.threads} thread(s), "
          f"{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
