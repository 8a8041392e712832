#!/usr/bin/env python
"""Do the zoonet weights transfer? Every strategy on tasks that cover the transfer table.

    python benchmarks/bench_pretrain.py                          # all tasks, seeds 0,1,2
    python benchmarks/bench_pretrain.py --tasks digits10 --seeds 0,1,2,3,4
    python benchmarks/bench_pretrain.py --weights digits04       # the older weights tag

Tasks (none of their images or classes is seen in pretraining):

- ``digits10`` / ``digits120``: scikit-learn digits 5-9, 10 or 120 training images per
  class (scarce / plenty, similar: handwritten strokes vs printed glyphs); val 179 images.
- ``glyphs10``: 10 of ``glyphs.HELDOUT_CLASSES``, 10 per class (scarce, similar); val 30
  per class.
- ``textures10`` / ``textures100``: the 10 procedural ``textures.CLASSES``, 10 or 100 per
  class (scarce / plenty, dissimilar); val 30 per class.

Strategies: ``zoo_core.finetune`` with ``linear_probe``, ``partial:1``, ``finetune`` and
``scratch`` (defaults: 30 epochs, AdamW, batch 16; final-epoch val accuracy), and
``logreg``: scikit-learn's cross-validated, L2-regularised logistic regression on the
frozen pretrained head-input features (standardised), the reference a linear probe should
reach. Each seed draws its own training images (and its own init). Prints mean ± standard
deviation over seeds, and the best pretrained strategy minus scratch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

STRATEGIES = ("logreg", "linear_probe", "partial:1", "finetune", "scratch")
TASKS = ("digits10", "digits120", "glyphs10", "textures10", "textures100")


def export(task: str, seed: int, root: Path) -> Path:
    from zoo_core.data._data import embedded_dataset
    from zoo_core_plugins.zoonet import glyphs, textures

    if task.startswith("digits"):
        return embedded_dataset(int(task[len("digits") :]), seed=seed, cache=root)
    if task.startswith("glyphs"):
        classes = glyphs.HELDOUT_CLASSES[:: len(glyphs.HELDOUT_CLASSES) // 10][:10]
        n = int(task[len("glyphs") :])
        return glyphs.export_imagefolder(
            root / f"{task}-seed{seed}", classes=classes, per_class=n, seed=seed
        )
    if task.startswith("textures"):
        n = int(task[len("textures") :])
        return textures.export_imagefolder(root / f"{task}-seed{seed}", per_class=n, seed=seed)
    raise SystemExit(f"unknown task {task!r}; choose from {TASKS}")


def _load(folder: Path):
    import numpy as np
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    xs, ys = [], []
    for i, c in enumerate(classes):
        for f in sorted((folder / c).glob("*.png")):
            with Image.open(f) as im:
                xs.append(np.asarray(im.convert("RGB")))
            ys.append(i)
    return np.stack(xs), np.asarray(ys)


def logreg(model_name: str, weights: str, data: Path, seed: int) -> float:
    """Accuracy of a CV-tuned logistic regression on frozen pretrained features."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import zoo_core

    xtr, ytr = _load(data / "train")
    xva, yva = _load(data / "val")
    model = zoo_core.build_model(model_name, int(ytr.max()) + 1, "linear_probe", weights=weights)
    cfg = model.zoo.data_config
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    model.eval()

    def feats(x):
        t = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        with torch.no_grad():
            return model.forward_head(model.forward_features(t), pre_logits=True).numpy()

    folds = int(min(5, np.bincount(ytr).min()))
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=folds, max_iter=5000),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(feats(xtr), ytr)
    return float(clf.score(feats(xva), yva))


def run(task: str, strategy: str, seed: int, args, root: Path) -> float:
    import zoo_core

    data = export(task, seed, root)
    if strategy == "logreg":
        return logreg(args.model, args.weights, data, seed)
    _, res = zoo_core.finetune(
        args.model, data, strategy=strategy, epochs=args.epochs, seed=seed,
        weights=args.weights, progress=False, verbose=False,
    )  # fmt: skip
    return res.final_val_acc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoonet_s")
    p.add_argument("--weights", default="default")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--data-dir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--verbose", action="store_true", help="print each run as it ends")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")
    strategies = args.strategies.split(",")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-pretrain-") as tmp:
        root = args.data_dir or Path(tmp)
        print(f"{args.model} weights={args.weights}, {args.epochs} epochs, seeds {seeds}")
        print(f"{'task':<12} " + " ".join(f"{s:>15}" for s in strategies) + "   best-scratch")
        for task in tasks:
            accs = {}
            for s in strategies:
                accs[s] = []
                for seed in seeds:
                    accs[s].append(run(task, s, seed, args, root))
                    if args.verbose:
                        print(f"  {task} {s} seed {seed}: {accs[s][-1]:.3f}", flush=True)
            cells = []
            for s in strategies:
                a = accs[s]
                sd = statistics.stdev(a) if len(a) > 1 else 0.0
                cells.append(f"{statistics.mean(a):.3f} ± {sd:.3f}")
            line = f"{task:<12} " + " ".join(f"{c:>15}" for c in cells)
            transfer = [s for s in strategies if s not in ("scratch", "logreg")]
            if "scratch" in accs and transfer:
                best = max(transfer, key=lambda s: statistics.mean(accs[s]))
                gain = statistics.mean(accs[best]) - statistics.mean(accs["scratch"])
                line += f"   {best} {100 * gain:+.1f} pts"
            print(line, flush=True)
            print(
                "             per seed: "
                + "; ".join(f"{s} " + " ".join(f"{v:.3f}" for v in accs[s]) for s in strategies),
                flush=True,
            )
    print(f"total {time.perf_counter() - started:.0f} s (1 torch thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
