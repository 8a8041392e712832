#!/usr/bin/env python
"""Does the data shift the pretrained BatchNorm statistics, stage by stage?

    OMP_NUM_THREADS=1 python benchmarks/bench_auto_bnshift.py --json out.json

An input-level shift (faint strokes, clutter behind a glyph, noise, inverted contrast)
should show where the data enters the network: the pretrained stem's BatchNorm sees
activations whose statistics differ from the running ones it learnt on the pretraining
data. An output-level shift (known glyphs regrouped) or a change of position should not.
If so, the shift tells which stages a scarce task needs to adapt, which no probe here has
told (``bench_auto_stages.py``).

For every scarce task-seed of the saved test-split runs (``results/bench_auto_test120_
<part>.json``; not refused, not saturated) this writes the task again as ``bench_auto.py``
did, passes auto's measuring sample once through the pretrained backbone in eval mode, and
at the input of every BatchNorm measures the mean over channels of the KL divergence of a
Gaussian with the sample's channel mean and variance from one with the layer's running
statistics. Printed per task-seed: the KL at the stem's BatchNorm and the mean KL per
stage (the stem counted with stage 0), the cell auto measured, and the points each of
``linear_probe``, ``partial:1``, ``first:1`` and ``finetune`` lost to the best strategy on
the test split. Exploratory: it decides nothing. Read off the first eight parts, it gave
candidate D in ``bench_auto_rules.py``; fresh7, written after D, rejected it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("tuning", "heldout", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6",
         "fresh7", "fresh8")
SHOWN = ("linear_probe", "partial:1", "first:1", "finetune")


def _kl_hook(store: dict, name: str):
    """A forward pre-hook on a BatchNorm2d accumulating its input's per-channel sums."""
    def hook(module, args) -> None:
        x = args[0].detach().double()
        s = store.setdefault(name, [0, 0.0, 0.0, module])
        s[0] += x.shape[0] * x.shape[2] * x.shape[3]
        s[1] = s[1] + x.sum((0, 2, 3))
        s[2] = s[2] + (x * x).sum((0, 2, 3))
    return hook


def bn_shift(folder, seed: int, model: str = "zoonet_s") -> dict[str, float]:
    """BatchNorm name -> mean over channels of KL(N(sample) || N(running stats))."""
    import torch
    import torch.nn as nn

    from zoo_core.build._builder import build_model
    from zoo_core.train._features import _loader
    from zoo_core.train._measure import _split_transform, prepare_sample, sample_indices

    labels = [lab for _, lab in folder.train]
    idx = sample_indices(labels, seed)
    net = build_model(model, folder.num_classes, "finetune", weights="default",
                      label_names=folder.classes)
    ds = prepare_sample(net, folder, idx).dataset(_split_transform(net)[1])
    net.eval()
    store: dict[str, list] = {}
    hooks = [m.register_forward_pre_hook(_kl_hook(store, n))
             for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for batch in _loader(ds, idx, 64, 0):
            net(batch.x)
    for h in hooks:
        h.remove()
    return {name: kl_from_running(*acc) for name, acc in store.items()}


def kl_from_running(n: int, s1, s2, bn) -> float:
    """The mean over channels of KL(N(sample) || N(running stats)) from ``_kl_hook``'s
    sums over ``n`` values per channel."""
    import torch

    mu = s1 / n
    var = (s2 / n - mu * mu).clamp_min(1e-12)
    rm, rv = bn.running_mean.double(), bn.running_var.double() + bn.eps
    return float((0.5 * (var / rv + (mu - rm) ** 2 / rv - 1.0 - torch.log(var / rv))).mean())


def per_stage(kl: dict[str, float], stages: tuple[str, ...]) -> list[float]:
    """The mean KL of the BatchNorms in each stage (anything before stage 1 counts with 0)."""
    groups: list[list[float]] = [[] for _ in stages]
    for name, v in kl.items():
        i = next((j for j in range(len(stages) - 1, -1, -1)
                  if name == stages[j] or name.startswith(stages[j] + ".")), 0)
        groups[i].append(v)
    return [sum(g) / len(g) if g else math.nan for g in groups]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import torch
    from bench_auto import saved_task_folder, scarce_rows

    from zoo_core.registry._registry import get_registry

    torch.set_num_threads(1)
    stages = get_registry().resolve("zoonet_s").spec.stages
    rows_out = []
    print(f"{'part':<7} {'task':<20} {'pc':>3} {'s':>1} {'stem KL':>8}  KL per stage"
          f"{'':>9} {'cell':<20} points lost: " + " ".join(f"{s:>8}" for s in SHOWN))
    for part in args.parts:
        for r in scarce_rows(part):
            kl = bn_shift(saved_task_folder(r), r["seed"])
            stem = next(iter(kl.values()))
            by_stage = per_stage(kl, stages)
            best = max(r["accuracy"].values())
            lost = {s: 100 * (best - r["accuracy"][s]) for s in SHOWN}
            cell = r["figures"]["decision"]["cell"]
            print(f"{part:<7} {r['task'][:20]:<20} {str(r['per_class'] or 'all'):>3} "
                  f"{r['seed']:>1} {stem:>8.3f}  " + " ".join(f"{v:>6.3f}" for v in by_stage)
                  + f" {cell:<20} " + " ".join(f"{lost[s]:>8.1f}" for s in SHOWN), flush=True)
            rows_out.append({"part": part, "task": r["task"], "per_class": r["per_class"],
                             "seed": r["seed"], "cell": cell, "kl": kl, "stem": stem,
                             "per_stage": by_stage, "lost": lost})
            if args.json:
                args.json.write_text(json.dumps(rows_out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
