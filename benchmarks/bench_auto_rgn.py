#!/usr/bin/env python
"""Would a surgical ``first:1`` signal help ``auto``? Auto-RGN on the tuning part.

    python benchmarks/bench_auto_rgn.py [benchmarks/results/bench_auto_issue21_tuning.json]

Lee et al. (ICLR 2023, "Surgical Fine-Tuning") pick the layers to tune from their
*relative gradient norms* (RGN: ``||grad|| / ||weight||``): an input-level shift shows up
as large gradients in the first layers. For every task-seed of the saved tuning run
(``--part tuning`` of ``bench_auto.py``; the held-out part is never read), this rebuilds the
task's training images, fits a new head on the frozen pretrained features (150 Adam steps),
takes one cross-entropy gradient over up to 400 training images (eval-mode BatchNorm)
and prints the RGN of the weights that ``first:1`` trains (stem + stage 0), of the middle
and the last stage, the ratio first / last, and what ``first:1`` scored against
``finetune`` in the saved run. Measured (zoonet_s, one thread): the ratio is 6.3-8.7 on
inverted digits, 6.0-9.7 on digits, textures and regrouped glyphs, 9-22 on the photo tasks,
and does not separate the task-seeds where ``first:1`` beat ``finetune`` by more than 2
points from those where it lost (photo rotation: 14.0 won, 16.7 and 22.2 lost; photo
shapes: 9.1 won, 9.5 and 14.1 lost), so ``auto`` does not pick ``first:K``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    import torch
    import torch.nn.functional as F
    from bench_auto_tasks import TASKS as EXTRA
    from bench_auto_tasks import write_task

    import zoo_core
    from zoo_core.data._data import ImageDataset, make_transforms, scan_image_folder
    from zoo_core.data._embedded import embedded_task
    from zoo_core.weights._weights import cache_dir

    torch.set_num_threads(1)
    saved = Path(sys.argv[1] if len(sys.argv) > 1 else
                 "benchmarks/results/bench_auto_issue21_tuning.json")
    for r in json.loads(saved.read_text())["tuning"]:
        task, pc, seed = r["task"], r["per_class"], r["seed"]
        root = (write_task(task, pc, seed=seed, val_per_class=30,
                           cache=cache_dir() / "datasets") if task in EXTRA else
                embedded_task(task, pc, seed=seed, val_per_class=30))
        folder = scan_image_folder(root, seed=seed, warn=False)
        torch.manual_seed(seed)
        m = zoo_core.build_model("zoonet_s", folder.num_classes, "finetune")
        ds = ImageDataset(folder.train, make_transforms(m)[1])
        items = [ds[i] for i in range(len(ds))]
        x = torch.stack([it[0] for it in items])
        y = torch.as_tensor([it[1] for it in items])
        if len(x) > 400:
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:400]
            x, y = x[idx], y[idx]
        m.eval()
        with torch.no_grad():
            feats = m.pool(m.stages(m.stem(x))).flatten(1)
        head = torch.nn.Linear(feats.shape[1], folder.num_classes)
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(150):
            opt.zero_grad()
            F.cross_entropy(head(feats), y).backward()
            opt.step()
        m.head.load_state_dict(head.state_dict())
        m.zero_grad()
        F.cross_entropy(m.head(m.pool(m.stages(m.stem(x))).flatten(1)), y).backward()

        def rgn(prefixes: tuple[str, ...], model: torch.nn.Module = m) -> float:
            ps = [p for n, p in model.named_parameters() if n.startswith(prefixes) and p.ndim > 1]
            grad = sum(float(p.grad.detach().norm() ** 2) for p in ps) ** 0.5
            return grad / sum(float(p.detach().norm() ** 2) for p in ps) ** 0.5

        first, mid, last = rgn(("stem", "stages.0")), rgn(("stages.1",)), rgn(("stages.2",))
        acc = r["accuracy"]
        print(f"{task:<16} {str(pc or 'all'):>4} {seed} RGN first {first:.2e} mid {mid:.2e} "
              f"last {last:.2e} first/last {first / last:5.2f} | first:1 "
              f"{acc['first:1']:.3f} finetune {acc['finetune']:.3f} best "
              f"{max(acc.values()):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
