"""``zoo rank``: the command-line front of :func:`zoo_core.rank_models`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zoo_core.errors import InvalidArgumentError


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo rank`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser(
        "rank", help="rank the zoo's pretrained backbones for fine-tuning on your data",
        description="Score every model whose pretrained weights are available now on a "
                    "class-balanced sample of DIR (cross-validated probe, LogME, gain over "
                    "random init), recommend a strategy for each as auto would, and print "
                    "them best first.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="ImageFolder DIR (DIR/<class>/* or DIR/train|val/...)")
    src.add_argument("--task", help="an embedded offline task instead of --data "
                     "(digits5-9, digits0-4, noise-bands, random-labels, ...)")
    p.add_argument("--per-class", type=int, default=None,
                   help="--task only: training images per class (default 10)")
    p.add_argument("--models", nargs="+", metavar="PATTERN", default=None,
                   help="name patterns, e.g. 'zoonet*' 'resnet*' 'zoonet_s.digits04' "
                        "(default: every model)")
    p.add_argument("--budget", default=None,
                   help="stop after this long and print the ranking so far (90s, 10m, 1h)")
    p.add_argument("--top", type=int, default=None, help="show only the best N")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-per-class", type=int, default=None,
                   help="sampled images per class (default 50, as auto)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the "
                   "feature cache")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_rank)
    return p


def _cmd_rank(args: argparse.Namespace) -> int:
    from zoo_core.rank._ranking import parse_budget, rank_models

    if args.top is not None and args.top < 1:
        raise InvalidArgumentError(f"--top must be at least 1, got {args.top}")
    parse_budget(args.budget)  # a bad budget fails before any work
    data = args.data
    if args.task is not None:
        from zoo_core.data._embedded import embedded_task

        data = embedded_task(args.task, args.per_class or 10, seed=args.seed)
    elif args.per_class is not None:
        raise InvalidArgumentError("--per-class applies to --task only; drop it with --data")
    ranking = rank_models(data, args.models, budget=args.budget, seed=args.seed,
                          device=args.device, per_class=args.sample_per_class,
                          cache=not args.no_cache, progress=not args.no_progress)
    if args.json:
        print(json.dumps(ranking.as_dict(), indent=2))
    else:
        print(ranking.summary(top=args.top))
    return 0
