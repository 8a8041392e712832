"""``zoo finetune``: the command-line front of :func:`zoo_core.finetune`."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from zoo_core._finetune.compare import run_default
from zoo_core._finetune.defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR
from zoo_core._finetune.pipeline import finetune
from zoo_core.errors import InvalidArgumentError


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo finetune`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on an image folder (default: embedded digits)",
        description="Fine-tune MODEL on an ImageFolder tree. Without --data: the embedded "
                    "digits 5-9 task. --compare runs every strategy on the four cells of the "
                    "transfer-learning table (embedded data) and prints what auto chose.")
    p.add_argument("model", nargs="?", default="zoonet_s", help="model name (default zoonet_s)")
    p.add_argument("--data", default=None,
                   help="ImageFolder DIR (DIR/<class>/* or DIR/train|val/<class>/*); "
                        "default: the embedded digits 5-9")
    p.add_argument("--strategy", "-s", default="auto",
                   help="auto (measured), linear_probe, finetune, partial:K or scratch")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs (default {DEFAULT_EPOCHS}; with --compare, each "
                        "cell's own: 30 scarce, 10 plenty)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="global batch size (split across torchrun processes)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate "
                   "(default per strategy: " + ", ".join(f"{k} {v:g}" for k, v in
                                                          DEFAULT_LR.items()) + ")")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--out", default=None, help="output folder (default runs/<model>-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--per-class", type=int, default=None,
                   help="embedded data only: training images per class (default 10)")
    p.add_argument("--weights", default="default", help="weights tag, path, URL or hf-hub:")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", default=None)
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that has "
                   "a checkpoint")
    p.add_argument("--force", action="store_true",
                   help="fine-tune even when auto finds nothing to learn (refusal)")
    p.add_argument("--no-cache", action="store_true",
                   help="linear_probe: run the frozen backbone every epoch (no feature cache)")
    p.add_argument("--augment", action="store_true",
                   help="timm's training augmentation (disables the feature cache)")
    p.add_argument("--input-size", type=int, default=None,
                   help="square input size overriding the model's data config")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--compare", action="store_true",
                   help="run every strategy on the embedded task and print a table")
    p.set_defaults(func=_cmd_finetune)
    return p


def _cmd_finetune(args: argparse.Namespace) -> int:
    if args.compare:
        if args.data is not None:
            raise InvalidArgumentError("--compare runs on the embedded dataset; drop --data")
        run_default(args.model, epochs=args.epochs, seed=args.seed,
                    progress=not args.no_progress)
        return 0
    out = args.out or os.path.join("runs", f"{args.model.replace('/', '_').replace(':', '_')}-"
                                   f"{time.strftime('%Y%m%d-%H%M%S')}")
    _, result = finetune(
        args.model, args.data, strategy=args.strategy, epochs=args.epochs or DEFAULT_EPOCHS,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, out=out,
        seed=args.seed, val_fraction=args.val_fraction, per_class=args.per_class,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        cache_features=not args.no_cache, augment=args.augment,
        push_to_hub=args.push_to_hub, resume=args.resume, overwrite=args.overwrite,
        num_workers=args.num_workers, device=args.device, progress=not args.no_progress,
        force=args.force, input_size=args.input_size)
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print()
        print(result.summary())
    return 0
