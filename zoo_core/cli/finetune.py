"""``zoo finetune``: the command-line front of :func:`zoo_core.finetune`."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from typing import Any

from zoo_core.cli import _finetune_kit as kit
from zoo_core.cli._config import add_config
from zoo_core.cli.lr_find import lr_arg
from zoo_core.errors import InvalidArgumentError
from zoo_core.train._compare import STRATEGIES, parse_strategies, run_default
from zoo_core.train._defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    LP_FT_LAYER_DECAY,
)
from zoo_core.train._pipeline import finetune
from zoo_core.train._recipe import OPTIMIZERS, Recipe

_R = Recipe()


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo finetune`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on an image folder (default: embedded digits)",
        description="Fine-tune MODEL on an ImageFolder tree. Without --data: the embedded "
                    "digits 5-9 task. --compare runs every strategy on the four cells of the "
                    "transfer-learning table (embedded data) and prints what auto chose. "
                    "Runs under torchrun / accelerate launch as they are.")
    p.add_argument("model", nargs="?", default="zoonet_s", help="model name")
    p.add_argument("--data", default=None,
                   help="ImageFolder DIR (DIR/<class>/* or DIR/train|val/<class>/*); "
                        "default: the embedded digits 5-9")
    p.add_argument("--strategy", "-s", default="auto",
                   help="auto (measured), linear_probe, finetune, partial:K (last K stages), "
                   "first:K (first K), stage:I (stage I alone), lp_ft or scratch; with "
                   "--compare, a comma-separated list of the strategies to compare")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs (default {DEFAULT_EPOCHS}; with --compare, each cell's own: "
                        "30 scarce, 10 plenty); with --resume a larger value extends a "
                        "finished run")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="global batch size (split across processes)")
    p.add_argument("--accumulate", type=int, default=1,
                   help="micro-batches per optimizer step (gradient accumulation)")
    p.add_argument("--lr", type=lr_arg, default=None, help="peak learning rate, or auto: "
                   "the LR range test's suggestion (zoo lr-find; recorded in run.json) "
                   "(default per strategy: "
                   + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    g = p.add_argument_group("recipe (timm's optimizer, scheduler, loss, Mixup and EMA)")
    g.add_argument("--opt", choices=OPTIMIZERS, default=_R.opt, help="optimizer")
    g.add_argument("--momentum", type=float, default=_R.momentum, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=_R.weight_decay,
                   help="weight decay (never on norms and biases)")
    g.add_argument("--layer-decay", type=float, default=None,
                   help="layer-wise lr decay, e.g. 0.75 (default off; lp_ft "
                        f"{LP_FT_LAYER_DECAY})")
    g.add_argument("--warmup-epochs", type=int, default=_R.warmup_epochs,
                   help="linear warmup before the cosine schedule")
    g.add_argument("--warmup-lr", type=float, default=_R.warmup_lr)
    g.add_argument("--min-lr", type=float, default=_R.min_lr, help="cosine floor")
    g.add_argument("--smoothing", type=float, default=_R.smoothing, help="label smoothing")
    g.add_argument("--mixup", type=float, default=_R.mixup, help="Mixup alpha (0: off)")
    g.add_argument("--cutmix", type=float, default=_R.cutmix, help="CutMix alpha (0: off)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an EMA of the weights (timm ModelEmaV3), e.g. 0.998; the EMA "
                        "weights are evaluated and saved (default off)")
    g.add_argument("--probe-solver", choices=("lbfgs", "sgd"), default="lbfgs",
                   help="linear_probe / lp_ft's first phase on cached features: lbfgs solves "
                        "the head as a cross-validated logistic regression; sgd trains it "
                        "for --epochs")
    g.add_argument("--lp-epochs", type=int, default=None,
                   help=f"lp_ft: head-only epochs before unfreezing (default {DEFAULT_EPOCHS})")
    p.add_argument("--precision", choices=("32", "bf16", "fp16"), default="32",
                   help="mixed precision through accelerate: bf16 on CPU or GPU, fp16 on "
                        "GPU only")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for inputs up to 64x64, else the "
                        "cores available, at most 4)")
    p.add_argument("--workers", "--num-workers", dest="num_workers", type=int, default=None,
                   help="DataLoader worker processes (default: 0 for inputs up to 64x64 on "
                        "CPU; else half the cores on CPU (at most 4), every core on CUDA (at "
                        "most 8); recorded in run.json)")
    g = p.add_argument_group("device speed (CUDA)")
    g.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="NHWC images and weights (auto: on CUDA, where bf16/fp16 convolutions "
                        "want it)")
    g.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the trained module (backend default inductor; the "
                        "first steps pay the compile time)")
    p.add_argument("--out", default=None, help="output folder (default runs/<model>-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--per-class", type=int, default=None,
                   help="embedded data only: training images per class (default 10)")
    p.add_argument("--weights", default="default", help="weights tag, path, URL or hf-hub:")
    p.add_argument("--early-stop", type=int, default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better val accuracy (default "
                        "off)")
    p.add_argument("--keep", type=int, default=1, metavar="K",
                   help="checkpoint/ keeps the latest epoch (to resume) and the best K "
                        "(safetensors)")
    p.add_argument("--log-with", default=None, metavar="TRACKER[,TRACKER]",
                   help="also log to accelerate's trackers: tensorboard (OUT/tensorboard), "
                        "mlflow (OUT/mlruns), wandb, aim, csv (OUT/metrics.csv); each needs "
                        "its package installed")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", default=None)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue a run (RUN, or --out RUN): model, data and every setting "
                        "come from RUN/run.json; only --epochs may change")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that has "
                   "a checkpoint")
    p.add_argument("--force", action="store_true",
                   help="fine-tune even when auto finds nothing to learn (refusal)")
    p.add_argument("--race", type=float, default=None, metavar="F",
                   help="auto: race linear_probe, partial:1, finetune and scratch for this "
                   "share of their epochs and train the best on validation (1: all four in "
                   "full, about five runs' time; default [auto] race_fraction, 0: off)")
    p.add_argument("--no-cache", action="store_true",
                   help="linear_probe: run the frozen backbone every epoch (no feature cache)")
    p.add_argument("--augment", action="store_true",
                   help="timm's training augmentation (disables the feature cache)")
    p.add_argument("--input-size", type=int, default=None,
                   help="square input size overriding the model's data config")
    p.add_argument("--device", default=None, help="cpu to force the CPU (default: accelerate "
                   "picks the launcher's device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--compare", action="store_true",
                   help="run every strategy on the embedded task and print a table")
    kit.add_flags(p)
    p.set_defaults(func=_cmd_finetune)
    for action in p._actions:  # which flags were typed: see _given
        # identity, not ==: a default of 0 or 0.0 (--seed, --mixup...) equals False
        if not any(action.default is v for v in (None, False, argparse.SUPPRESS)) \
                and action.dest != "help":
            action.default = _Default(action.default)
    add_config(p, _RECIPE)  # --config FILE, --print-config
    return p


class _Default:
    """A parser default, marked so that a flag typed on the command line (even with the
    default's value) is told apart from one left out (resume refuses typed flags that
    differ from the run's record and takes the rest from it)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def __str__(self) -> str:
        return str(self.value)

    def __eq__(self, other: object) -> bool:
        return bool(self.value == (other.value if isinstance(other, _Default) else other))

    __hash__ = None  # type: ignore[assignment]


def _given(args: argparse.Namespace) -> tuple[argparse.Namespace, set[str]]:
    """``args`` with plain values, and the destinations the command line set."""
    plain, given = argparse.Namespace(), set()
    for key, value in vars(args).items():
        if isinstance(value, _Default):
            value = value.value
        elif value is not None and value is not False:
            given.add(key)
        setattr(plain, key, value)
    return plain, given


_RECIPE = {"opt": "opt", "momentum": "momentum", "weight_decay": "weight_decay",
           "layer_decay": "layer_decay", "warmup_epochs": "warmup_epochs",
           "warmup_lr": "warmup_lr", "min_lr": "min_lr", "smoothing": "smoothing",
           "mixup": "mixup", "cutmix": "cutmix", "ema": "ema_decay"}
_SAME = ("model", "data", "strategy", "epochs", "batch_size", "lr", "seed", "val_fraction",
         "per_class", "early_stop", "keep", "log_with", "push_to_hub", "resume", "overwrite",
         "force", "augment", "input_size", "precision", "accumulate", "threads",
         "num_workers", "lp_epochs", "probe_solver", "device", "out", "channels_last",
         "compile", "balance", "race")


def _cmd_finetune(args: argparse.Namespace) -> int:
    args, given = _given(args)
    if args.json and args.compare:
        raise InvalidArgumentError("--json prints one run's record; drop it with --compare")
    if args.compare:
        if args.data is not None:
            raise InvalidArgumentError("--compare runs on the embedded dataset; drop --data")
        strategies = (parse_strategies(args.strategy) if "strategy" in given else
                      STRATEGIES)
        run_default(args.model, epochs=args.epochs, seed=args.seed,
                    progress=not args.no_progress, strategies=strategies)
        return 0
    # Only what was typed goes to finetune(): its defaults are the parser's, and a resumed
    # run takes everything left out from its run.json.
    kwargs: dict[str, Any] = {k: getattr(args, k) for k in _SAME if k in given}
    recipe = {field: getattr(args, dest) for dest, field in _RECIPE.items() if dest in given}
    if recipe:
        kwargs["recipe"] = recipe
    if "weights" in given:
        kwargs["weights"] = None if str(args.weights).lower() == "none" else args.weights
    if args.no_cache:
        kwargs["cache_features"] = False
    if kit.model_kwargs(args) is not None:
        kwargs["model_kwargs"] = kit.model_kwargs(args)
    if not args.resume and args.out is None:
        kwargs["out"] = os.path.join("runs", f"{args.model.replace('/', '_').replace(':', '_')}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
    main = int(os.environ.get("RANK", "0") or 0) == 0
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        _, result = finetune(progress=not args.no_progress, **kwargs)
        if main:
            print()
            print(result.summary())
            run = shlex.quote(result.out_dir or "OUT")
            best = shlex.quote(result.best_dir or "OUT/best")
            print(f"\nnext       zoo eval {run}  (its validation split; --data DIR for other "
                  f"images)\n"
                  f"           zoo predict {best} IMAGE_OR_FOLDER...\n"
                  f"           zoo push {best} ORG/NAME")
            sys.stdout.flush()
    if main and args.json:
        print(kit.result_json(result), flush=True)
    return 0
