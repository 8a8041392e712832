"""``zoo finetune``'s flags for class balance, model keyword arguments and ``--json``."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from zoo_core.errors import InvalidArgumentError

BALANCES = ("sampler", "loss")  # zoo_core.train._balance.BALANCES (not imported: fast --help)


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data balance and model arguments")
    g.add_argument("--balance", choices=BALANCES, default=None,
                   help="imbalanced classes: 'sampler' draws each epoch's images weighted "
                        "by 1/class size, 'loss' weights the cross-entropy per class "
                        "(default: off; a warning when classes differ by more than 3x)")
    g.add_argument("--in-chans", type=int, default=None, metavar="C",
                   help="input channels (pretrained first filters adapted; default: the "
                        "model's)")
    g.add_argument("--drop-path-rate", type=float, default=None, metavar="P",
                   help="stochastic depth rate (default: the model's)")
    g.add_argument("--model-kwargs", action="append", default=None, metavar="K=V",
                   help="any other keyword argument of the model's builder, as "
                        "build_model(**kwargs); repeatable; V parsed as int, float, "
                        "true/false, none or else a string (default: none)")
    p.add_argument("--json", action="store_true",
                   help="print the result record as one JSON object on stdout (progress "
                        "and the summary go to stderr)")


def parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def model_kwargs(args: argparse.Namespace) -> dict[str, Any] | None:
    """The model keyword arguments typed on the command line (None: none)."""
    out: dict[str, Any] = {}
    for item in args.model_kwargs or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise InvalidArgumentError(
                f"--model-kwargs {item!r}: expected KEY=VALUE such as drop_rate=0.1 or "
                "global_pool=avg")
        if key in out:
            raise InvalidArgumentError(f"--model-kwargs: {key} is given twice")
        out[key] = parse_value(value)
    for key, flag in (("in_chans", "--in-chans"), ("drop_path_rate", "--drop-path-rate")):
        value = getattr(args, key)
        if value is None:
            continue
        if key in out:
            raise InvalidArgumentError(f"{key} is given by both {flag} and --model-kwargs; "
                                       "keep one")
        out[key] = value
    return out or None


def result_json(result: Any) -> str:
    """The result record as one line of JSON."""
    import dataclasses

    record = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else \
        dict(vars(result))
    return json.dumps(record, default=str, sort_keys=True)
