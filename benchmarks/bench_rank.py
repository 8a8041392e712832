#!/usr/bin/env python
"""Does ``zoo rank`` pick the backbone that fine-tunes best, at a fraction of the cost?

    python benchmarks/bench_rank.py                  # default suite, 1 thread
    python benchmarks/bench_rank.py --no-extra-tags  # only the weights shipped in the zoo
    python benchmarks/bench_rank.py --json out.json  # also keep every figure
    python benchmarks/bench_rank.py --epochs 20      # fine-tune shorter than a user would

The zoo is every embedded backbone and weights tag (``zoonet*``: the shipped tags, and
any added later, such as glyph-pretrained ones). Unless ``--no-extra-tags``, the benchmark
first pretrains more tags itself, so that the ranking has sources of different relevance
to choose from: ``zoonet_{s,m}.noise`` (trained from scratch on band-passed noise, seed 99,
never the evaluation images) and ``zoonet_{s,m}.junk`` (trained on random labels: a
backbone that learnt nothing useful). They join the zoo through a ``ZOO_CORE_REGISTRY``
file in a temporary folder, as a user's own tags would.

For each embedded task: ``rank_models`` (feature cache off, so its time is the real cost),
then every candidate fine-tuned with the strategy its row recommends (a refusal is
fine-tuned with ``finetune``, as ``--force`` would) the way ``zoo finetune`` does it for a
user who gives no ``--epochs``: ``DEFAULT_EPOCHS`` (30) epochs and the other defaults, same
seed; its final validation accuracy is what it "reaches". ``--epochs N`` overrides that.
(Until December 2026 this suite fine-tuned for 20 epochs at 10 images/class and 10 at
50/class, shorter than a user's run; the cost ratio it reported was lower for that reason.)
Reported per task and overall:

- Kendall's tau between each estimator (probe, LogME, gain) and the reached accuracy;
- top-1 hit: the probe's first choice within 2 points of the best reached accuracy
  (also for LogME and gain, and the ranking's tie group);
- cost: ``zoo rank`` time against fine-tuning every candidate.

Targets (issue 12): top-1 within 2 points on >= 80% of tasks, >= 20x cheaper.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# (task, training images per class)
TASKS = (
    ("digits5-9", 10),
    ("digits0-4", 10),
    ("noise-bands", 10),
    ("digits5-9", 50),
    ("noise-bands", 50),
    ("glyphs-heldout", 10),  # run when the zoonet glyph data is installed
    ("textures", 10),
)
ESTIMATORS = ("probe", "logme", "gain")
EXTRA_TAGS = (("noise", "noise-bands"), ("junk", "random-labels"))


def task_available(name: str) -> bool:
    from zoo_core.data._embedded import TASKS as ALL

    if name not in ALL:
        return False
    try:
        ALL[name][1](2, 1, 0)
    except (ImportError, AttributeError):
        return False
    return True


def make_extra_tags(folder: Path, epochs: int) -> Path:
    """Pretrain zoonet_s/m on other sources; return a registry.toml adding them as tags."""
    from zoo_core.data._embedded import embedded_task
    from zoo_core.hub._hub import save_pretrained
    from zoo_core.train import finetune
    from zoo_core.weights._weights import sha256_file

    lines = []
    for arch in ("zoonet_s", "zoonet_m"):
        for tag, task in EXTRA_TAGS:
            data = embedded_task(task, 100, seed=99)
            t0 = time.perf_counter()
            model, res = finetune(arch, data, strategy="scratch", epochs=epochs, seed=99,
                                  progress=False, verbose=False)
            out = folder / f"{arch}-{tag}"
            save_pretrained(model, out)
            weights = out / "model.safetensors"
            print(f"  pretrained {arch}.{tag} on {task} (100/class, seed 99): val acc "
                  f"{res.final_val_acc:.3f}, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
            lines += [f'[weights."zoonet/{arch}".{tag}]', f'source = "{weights}"',
                      f'sha256 = "{sha256_file(weights)}"', ""]
    toml = folder / "registry.toml"
    toml.write_text("\n".join(lines), encoding="utf-8")
    return toml


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    if len(a) < 2:
        return float("nan")
    tau = kendalltau(a, b).statistic
    return float(tau)


def run_task(task: str, per_class: int, epochs: int, seed: int) -> dict:
    from zoo_core.data._embedded import embedded_task
    from zoo_core.rank import rank_models
    from zoo_core.train import finetune

    data = embedded_task(task, per_class, seed=seed)
    t0 = time.perf_counter()
    ranking = rank_models(data, ["zoonet*"], seed=seed, cache=False)
    rank_s = time.perf_counter() - t0
    rows = []
    for row in ranking.measured:
        model, _, tag = row.name.rpartition(".")
        strategy = "finetune" if row.strategy == "refuse" else row.strategy
        weights = "default" if strategy == "scratch" else tag
        t1 = time.perf_counter()
        _, res = finetune(model, data, strategy=strategy, weights=weights, epochs=epochs,
                          seed=seed, progress=False, verbose=False)
        rows.append({"name": row.name, "probe": row.probe.mean, "probe_std": row.probe.std,
                     "logme": row.logme, "gain": row.gain, "strategy": row.strategy,
                     "tie_with_next": row.tie_with_next, "accuracy": res.final_val_acc,
                     "seconds": time.perf_counter() - t1})
        print(f"    {row.name:<20} {row.strategy:<12} probe {row.probe.mean:.3f} -> "
              f"{res.final_val_acc:.3f}", file=sys.stderr, flush=True)
    best = max(r["accuracy"] for r in rows)
    accs = [r["accuracy"] for r in rows]
    out = {"task": task, "per_class": per_class, "epochs": epochs, "seed": seed,
           "rank_seconds": rank_s, "finetune_seconds": sum(r["seconds"] for r in rows),
           "best": best, "rows": rows, "tau": {}, "hit": {}, "chosen": {}}
    for est in ESTIMATORS:
        scores = [r[est] for r in rows]
        out["tau"][est] = kendall(scores, accs)
        top = max(rows, key=lambda r: r[est])
        out["chosen"][est] = top["name"]
        out["hit"][est] = best - top["accuracy"] <= 0.02 + 1e-9
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-extra-tags", action="store_true",
                    help="rank only the weights shipped in the zoo")
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=None,
                    help="fine-tuning epochs per candidate (default: zoo finetune's "
                         "default, DEFAULT_EPOCHS)")
    ap.add_argument("--tasks", nargs="+", default=None,
                    help="only these task names (default: the whole suite)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args()

    import torch

    from zoo_core.registry._registry import reset_registry
    from zoo_core.train._defaults import DEFAULT_EPOCHS

    epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="bench-rank-")
    if not args.no_extra_tags:
        os.environ["ZOO_CORE_REGISTRY"] = str(make_extra_tags(Path(tmp.name),
                                                              args.pretrain_epochs))
        reset_registry()
    pretrain_s = time.perf_counter() - started
    results = []
    for task, per_class in TASKS:
        if args.tasks and task not in args.tasks:
            continue
        if not task_available(task):
            print(f"  {task}: not available in this install (skipped)", file=sys.stderr)
            continue
        print(f"  {task} pc={per_class}:", file=sys.stderr, flush=True)
        results.append(run_task(task, per_class, epochs, args.seed))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    tmp.cleanup()

    print(f"\n{'task':<15} {'pc':>3} {'cands':>5} {'best reached':<27} "
          f"{'probe picks':<27} {'tau probe':>9} {'logme':>6} {'gain':>6} {'rank s':>7} "
          f"{'ft-all s':>8} {'x':>5}")
    for r in results:
        best_row = max(r["rows"], key=lambda x: x["accuracy"])
        pick = next(x for x in r["rows"] if x["name"] == r["chosen"]["probe"])
        print(f"{r['task']:<15} {r['per_class']:>3} {len(r['rows']):>5} "
              f"{best_row['name']:<19} {best_row['accuracy']:.3f} "
              f"{pick['name']:<19} {pick['accuracy']:.3f}{'' if r['hit']['probe'] else '✗'}"
              f"{' ' if r['hit']['probe'] else ''}"
              f" {r['tau']['probe']:>8.2f} {r['tau']['logme']:>6.2f} {r['tau']['gain']:>6.2f}"
              f" {r['rank_seconds']:>7.1f} {r['finetune_seconds']:>8.1f}"
              f" {r['finetune_seconds'] / r['rank_seconds']:>5.1f}")
    n = len(results)
    if not n:
        print("no task ran")
        return 1
    print()
    for est in ESTIMATORS:
        hits = sum(r["hit"][est] for r in results)
        taus = [r["tau"][est] for r in results if r["tau"][est] == r["tau"][est]]
        print(f"{est:<6} top-1 within 2 points on {hits}/{n} tasks ({100 * hits / n:.0f}%), "
              f"mean Kendall tau {statistics.fmean(taus) if taus else float('nan'):+.2f}")
    rank_s = sum(r["rank_seconds"] for r in results)
    ft_s = sum(r["finetune_seconds"] for r in results)
    print(f"cost   zoo rank {rank_s:.1f} s vs fine-tuning every candidate {ft_s:.1f} s: "
          f"{ft_s / rank_s:.1f}x cheaper (targets: >= 80% top-1, >= 20x)")
    print(f"setup  {pretrain_s:.0f} s pretraining extra tags; fine-tuning {epochs} epochs"
          f"{' (zoo finetune default)' if args.epochs is None else ''}; "
          f"{args.threads} thread(s); "
          f"{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
