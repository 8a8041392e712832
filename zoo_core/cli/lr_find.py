"""``zoo lr-find``: the learning-rate range test (:mod:`zoo_core.train._lr_find`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from zoo_core.train._defaults import DEFAULT_BATCH_SIZE
from zoo_core.train._lr_find import END_LR, NUM_ITER, START_LR


def lr_arg(text: str) -> float | str:
    """``--lr``'s argparse type: a number or ``auto``."""
    from zoo_core.train._lr_find import parse_lr

    try:
        return parse_lr(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cli(sub: Any) -> None:
    p = sub.add_parser(
        "lr-find", help="find a learning rate: the LR range test (fastai's lr_find)",
        description="The learning-rate range test (Smith 2017, as fastai's lr_find) for "
                    "MODEL on DIR, with the strategy's own optimizer and param groups: "
                    "NUM_ITER steps while the rate grows exponentially from START_LR to "
                    "END_LR, the smoothed loss recorded until it diverges. Prints the "
                    "suggestion (the valley), writes OUT/lr_find.png and OUT/lr_find.json. "
                    "Nothing is trained: zoo finetune --lr auto runs it before training.")
    p.add_argument("model", nargs="?", default="zoonet_s", help="model name")
    p.add_argument("--data", default=None, help="ImageFolder DIR (default: the embedded "
                   "digits 5-9)")
    p.add_argument("--strategy", "-s", default="auto",
                   help="whose param groups are tested: auto, linear_probe, finetune, "
                        "partial:K, lp_ft or scratch")
    p.add_argument("--start-lr", type=float, default=START_LR, help="first learning rate")
    p.add_argument("--end-lr", type=float, default=END_LR, help="last learning rate")
    p.add_argument("--num-iter", type=int, default=NUM_ITER, help="steps of the test")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--opt", default=None, help="optimizer (default: finetune's)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay (default: finetune's)")
    p.add_argument("--layer-decay", type=float, default=None,
                   help="layer-wise lr decay (default: finetune's: off, lp_ft 0.75)")
    p.add_argument("--probe-solver", choices=("lbfgs", "sgd"), default="sgd",
                   help="linear_probe: sgd trains the head (lbfgs solves it, with no rate)")
    p.add_argument("--precision", choices=("32", "bf16", "fp16"), default="32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--per-class", type=int, default=None,
                   help="embedded data only: training images per class (default 10)")
    p.add_argument("--weights", default="default", help="weights tag, path, URL or hf-hub:")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None, help="cpu to force the CPU")
    p.add_argument("--out", default=None, help="folder for lr_find.png and lr_find.json "
                   "(default runs/lr-find-<model>-<time>)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_lr_find)


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from zoo_core.train._lr_find_run import lr_find

    out = args.out or ("runs/lr-find-" + args.model.replace("/", "_").replace(":", "_")
                       + time.strftime("-%Y%m%d-%H%M%S"))
    recipe = {k: v for k, v in (("opt", args.opt), ("weight_decay", args.weight_decay),
                                ("layer_decay", args.layer_decay)) if v is not None}
    res = lr_find(args.model, args.data, start_lr=args.start_lr, end_lr=args.end_lr,
                  num_iter=args.num_iter, strategy=args.strategy, batch_size=args.batch_size,
                  probe_solver=args.probe_solver, precision=args.precision, seed=args.seed,
                  val_fraction=args.val_fraction, per_class=args.per_class,
                  weights=None if str(args.weights).lower() == "none" else args.weights,
                  threads=args.threads, device=args.device, out=out, recipe=recipe or None,
                  progress=False, verbose=not args.json)
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
        return 0
    print(f"\nsuggested lr  {res.lr:.3g}  (valley; steepest {res.steep:.2g}, min/10 "
          f"{res.min_div10:.2g})")
    print(f"outputs       {out} (lr_find.png, lr_find.json)")
    print(f"next          zoo finetune {args.model} --lr {res.lr:.3g} ...  (or --lr auto)")
    return 0
