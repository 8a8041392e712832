#!/usr/bin/env python
"""Does an early-stage vs late-stage probe tell which stages a scarce task needs?

    OMP_NUM_THREADS=1 python benchmarks/bench_auto_stages.py --json out.json

Issue 21 suggests an input-level-shift signal: the gain of pretrained over random-init
features measured at each stage, not only at the head's input. For every scarce task-seed of
the saved test-split runs (``results/bench_auto_test120_<part>.json``; not refused, not
saturated) this writes the task again as ``bench_auto.py`` did, takes auto's measuring
sample of the training images, and probes (auto's cross-validated logistic regression) the
globally pooled output of every backbone stage, on pretrained features and on random-init
ones (BatchNorm recalibrated, as auto does). Printed per task-seed: the gain per stage as a
share of the room above chance, and the points each of ``linear_probe``, ``partial:1``,
``first:1`` and ``finetune`` lost to the best strategy on the test split. Exploratory: it
decides nothing, and every part it reads has been seen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("tuning", "heldout", "fresh", "fresh2", "fresh3", "fresh4")
SHOWN = ("linear_probe", "partial:1", "first:1", "finetune")


def _pool_into(store: list):
    """A forward hook appending the module's output, globally average-pooled."""
    def hook(module, args, out) -> None:
        store.append(out.float().mean((2, 3)) if out.ndim == 4 else out.float().flatten(1))
    return hook


def stage_probes(folder, seed: int, model: str = "zoonet_s") -> dict[str, list[float]]:
    """Per feature set (pretrained, random-init): the probe's accuracy at every stage."""
    import torch

    from zoo_core.build._builder import build_model
    from zoo_core.registry._registry import get_registry
    from zoo_core.train._features import _loader
    from zoo_core.train._measure import (
        _split_transform,
        cv_probe,
        prepare_sample,
        recalibrate_batchnorm,
        sample_indices,
    )
    from zoo_core.train._utils import _seed_all

    stages = get_registry().resolve(model).spec.stages
    labels = [lab for _, lab in folder.train]
    idx = sample_indices(labels, seed)
    out: dict[str, list[float]] = {}
    prepared = None
    for name, weights, s, recal in (("pretrained", "default", seed, False),
                                    ("random-init", None, seed + 1, True)):
        _seed_all(s)
        net = build_model(model, folder.num_classes, "finetune" if weights else "scratch",
                          weights="default", label_names=folder.classes)
        if prepared is None:
            prepared = prepare_sample(net, folder, idx)
        _, normalize = _split_transform(net)
        ds = prepared.dataset(normalize)
        if recal:
            recalibrate_batchnorm(net, ds, idx, batch_size=64, device="cpu")
        net.eval()
        mods = dict(net.named_modules())
        pooled: dict[str, list] = {st: [] for st in stages}
        hooks = [mods[st].register_forward_hook(_pool_into(pooled[st])) for st in stages]
        ys = []
        with torch.no_grad():
            for batch in _loader(ds, idx, 64, 0):
                net(batch.x)
                ys.append(batch.y)
        for h in hooks:
            h.remove()
        y = torch.cat(ys).numpy()
        out[name] = [cv_probe(torch.cat(pooled[st]).numpy(), y, seed=seed).mean
                     for st in stages]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import torch
    from bench_auto import saved_task_folder, scarce_rows

    torch.set_num_threads(1)
    rows_out = []
    print(f"{'part':<7} {'task':<20} {'pc':>3} {'s':>1}  gain share per stage (pre-rand)/"
          f"(1-chance)   points lost: " + " ".join(f"{s:>8}" for s in SHOWN))
    for part in args.parts:
        for r in scarce_rows(part):
            task, seed = r["task"], r["seed"]
            folder = saved_task_folder(r)
            probes = stage_probes(folder, seed)
            chance = r["chance"]
            share = [(p - q) / (1 - chance)
                     for p, q in zip(probes["pretrained"], probes["random-init"], strict=True)]
            best = max(r["accuracy"].values())
            lost = {s: 100 * (best - r["accuracy"][s]) for s in SHOWN}
            print(f"{part:<7} {task[:20]:<20} {str(r['per_class'] or 'all'):>3} {seed:>1}  "
                  + " ".join(f"{x:+.2f}" for x in share) + " " * 18
                  + " ".join(f"{lost[s]:>8.1f}" for s in SHOWN), flush=True)
            rows_out.append({"part": part, "task": task, "per_class": r["per_class"],
                             "seed": seed, "chance": chance, "probes": probes,
                             "share": share, "lost": lost})
            if args.json:
                args.json.write_text(json.dumps(rows_out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
