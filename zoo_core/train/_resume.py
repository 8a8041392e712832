"""A run is one thing: ``resume`` reads the run's arguments back from ``run.json``.

:func:`finetune` records every argument that defines the run (model, data, strategy,
every hyperparameter, ``keep``, ``early_stop``, ``log_with``) under ``run.json``'s
``"arguments"``. A resumed call takes them from there; only ``epochs`` (and how this
process runs: threads, workers, device, progress, verbosity, the Hub push) may change. An
argument the caller passed explicitly that differs from the record is refused, naming its
flag, never ignored. :func:`explicit_arguments` wraps :func:`finetune` so that it knows
which keyword arguments were given (``inspect.Signature.bind`` leaves defaults out); the
CLI passes only the flags typed on the command line.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zoo_core.errors import InvalidArgumentError

# Arguments about how this process runs, not what the run is: free to change on resume.
EXECUTION = frozenset({"epochs", "out", "resume", "overwrite", "num_workers", "device",
                       "progress", "verbose", "threads", "push_to_hub", "force",
                       "channels_last", "compile", "race"})
FLAGS = {"model": "MODEL", "data": "--data", "strategy": "--strategy",
         "batch_size": "--batch-size", "lr": "--lr", "weight_decay": "--weight-decay",
         "seed": "--seed", "val_fraction": "--val-fraction", "per_class": "--per-class",
         "weights": "--weights", "cache_features": "--no-cache", "augment": "--augment",
         "input_size": "--input-size", "precision": "--precision",
         "accumulate": "--accumulate", "early_stop": "--early-stop", "keep": "--keep",
         "log_with": "--log-with", "lp_epochs": "--lp-epochs",
         "probe_solver": "--probe-solver", "sync_bn": "sync_bn", "opt": "--opt",
         "momentum": "--momentum", "layer_decay": "--layer-decay",
         "warmup_epochs": "--warmup-epochs", "warmup_lr": "--warmup-lr",
         "min_lr": "--min-lr", "smoothing": "--smoothing", "mixup": "--mixup",
         "cutmix": "--cutmix", "ema_decay": "--ema", "balance": "--balance",
         "model_kwargs": "--in-chans/--drop-path-rate/--model-kwargs"}


def data_path(data: Any) -> str | None:
    """``data`` as run.json records it: an absolute path, or None (embedded)."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return str(Path(data).expanduser().resolve())
    return None  # an already scanned FolderData (auto's pilot): never recorded


def record_arguments(opts: Any, epochs: int) -> dict[str, Any]:
    """The ``"arguments"`` of run.json: what a resumed call reads back."""
    from zoo_core.train._options import _Options

    assert isinstance(opts, _Options)
    return {"model": opts.model, "data": data_path(opts.data), "strategy": opts.strategy,
            "epochs": epochs, "batch_size": opts.batch_size, "lr": opts.lr,
            "seed": opts.seed, "val_fraction": opts.val_fraction,
            "per_class": opts.per_class,
            "weights": None if opts.weights is None else str(opts.weights),
            "cache_features": opts.cache_features,
            "augment": dict(opts.augment) if isinstance(opts.augment, Mapping)
            else bool(opts.augment),
            "input_size": list(opts.input_size) if opts.input_size else None,
            "precision": opts.precision, "accumulate": opts.accumulate,
            "recipe": opts.recipe.as_dict(), "early_stop": opts.early_stop,
            "keep": opts.keep, "log_with": opts.log_with, "lp_epochs": opts.lp_epochs,
            "probe_solver": opts.probe_solver, "sync_bn": opts.sync_bn,
            "balance": opts.balance, "model_kwargs": dict(opts.model_kwargs)}


def explicit_arguments(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``finetune``: a resumed call gets the run's recorded arguments (see the
    module doc); the signature and docstring stay ``fn``'s."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = dict(sig.bind(*args, **kwargs).arguments)
        if given.get("resume"):
            given = resume_arguments(given)
        return fn(**given)

    return wrapper


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                     default=str)


def _normal(key: str, value: Any) -> Any:
    from zoo_core.train._args import parse_input_size

    if key == "data":
        return data_path(value)
    if key == "weights":
        return None if value is None or str(value).lower() == "none" else str(value)
    if key == "input_size":
        size = parse_input_size(value)
        return list(size) if size else None
    if key == "augment":
        return dict(value) if isinstance(value, Mapping) else bool(value)
    if key == "strategy":
        return str(value)
    if key == "model_kwargs":
        return dict(value or {})
    return value


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _refuse(out: Path, key: str, value: Any, recorded: Any) -> InvalidArgumentError:
    flag = FLAGS.get(key, key)
    was = "the embedded data (no --data)" if key == "data" and recorded is None \
        else _shown(recorded)
    return InvalidArgumentError(
        f"cannot resume {out} with {flag} {_shown(value)} (Python: {key}="
        f"{json.dumps(value, default=str)}): the run was started with "
        f"{was} "
        "and a resumed run keeps every "
        f"setting recorded in its run.json (only --epochs may change); drop {flag}, or "
        "start a new run in another --out (or --overwrite to start this one over)")


def resume_arguments(given: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a resumed call: the run's recorded ones, the caller's execution
    arguments and ``epochs``; a differing explicit argument is refused."""
    resume, out = given.get("resume"), given.get("out")
    if resume is not True and isinstance(resume, (str, os.PathLike)):
        if out is not None and Path(out).expanduser().resolve() != \
                Path(resume).expanduser().resolve():
            raise InvalidArgumentError(
                f"--resume {resume} and --out {out} name different folders; give the run "
                "folder once: --resume RUN (or --resume --out RUN)")
        out = resume
    given = {**given, "resume": True, "out": out}
    if out is None:
        raise InvalidArgumentError("resume=True (--resume) needs out=DIR (--out), the run's "
                                   "output folder (or pass it: --resume RUN)")
    from zoo_core.train._run_record import read_run

    out_dir = Path(out).expanduser()
    record = read_run(out_dir)
    if record is None:
        if (out_dir / "run.json").is_file() and "data" not in given and "model" not in given:
            raise InvalidArgumentError(
                f"{out_dir / 'run.json'} cannot be read (not JSON), and the run's model, "
                "data and settings are recorded there; nothing was changed. Restore it, or "
                "resume with the run's whole command plus --resume (its checkpoint checks "
                "that the settings match)")
        return given  # not a run folder: open_checkpoint says so
    rec = record.get("arguments")
    if not isinstance(rec, dict):
        rec = _legacy_arguments(record)
        if rec is None:
            return given
    rec = dict(rec)
    hyper = record.get("hyperparameters", {})
    for key, value in given.items():
        if key in EXECUTION:
            continue
        if key == "recipe":
            from zoo_core.train._recipe import Recipe

            fields = value.as_dict() if isinstance(value, Recipe) else dict(value or {})
            for name, v in fields.items():
                old = rec.get("recipe", {}).get(name)
                if not _same(v, old):
                    raise _refuse(out_dir, name, v, old)
            continue
        if key == "weight_decay":
            old = rec.get("recipe", {}).get("weight_decay")
        elif key == "lr" and rec.get("lr") is None:
            old = hyper.get("lr")  # the strategy's default, as it was resolved
        else:
            old = rec.get(key)
        new = _normal(key, value)
        if key == "model_kwargs":
            old = _normal(key, old)
        if key == "strategy" and new in (str(old), str(record.get("strategy"))):
            continue  # auto's choice, named explicitly, is the same run
        if not _same(new, old):
            raise _refuse(out_dir, key, new, old)
    merged = {k: v for k, v in rec.items() if k != "epochs"}
    merged.update({k: v for k, v in given.items() if k in EXECUTION})
    merged["epochs"] = given.get("epochs") or rec.get("epochs")
    return merged


def _legacy_arguments(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The arguments of a run recorded before run.json had ``"arguments"``, rebuilt from
    its hyperparameters (``log_with`` was not recorded then)."""
    from zoo_core.train._recipe import Recipe

    hp, data = record.get("hyperparameters"), record.get("data")
    if not isinstance(hp, dict) or not isinstance(data, dict) or "model" not in hp:
        return None
    names = ("batch_size", "lr", "seed", "val_fraction", "per_class", "weights",
             "cache_features", "augment", "input_size", "precision", "accumulate",
             "early_stop", "keep", "lp_epochs", "probe_solver", "sync_bn")
    embedded = str(data.get("source", "")).startswith("embedded")
    return {"model": hp["model"], "data": None if embedded else data.get("root"),
            "strategy": hp.get("requested_strategy", hp.get("strategy", "auto")),
            "epochs": hp.get("epochs"), **{k: hp[k] for k in names if k in hp},
            "recipe": {k: hp[k] for k in Recipe.__dataclass_fields__ if k in hp},
            "log_with": None}


def _leftovers(out_dir: Path) -> list[str]:
    ckpt_dir = out_dir / "checkpoint"
    found = sorted(f"checkpoint/{p.name}" for p in ckpt_dir.glob("epoch-*.safetensors")) \
        if ckpt_dir.is_dir() else []
    if (out_dir / "best").exists():
        found.append("best/")
    return found


def open_checkpoint(opts: Any, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint to continue, after the resume/overwrite rules. Nothing here deletes
    or overwrites: a run folder whose ``state.json`` is missing or damaged is an error
    that says how to recover."""
    from zoo_core.train._checkpoint import _read_checkpoint
    from zoo_core.train._run_record import read_run

    out_dir = opts.out
    if out_dir is None:
        if opts.resume:
            raise InvalidArgumentError("resume=True (--resume) needs out=DIR (--out), the "
                                       "run's output folder")
        return None
    if opts.overwrite and not opts.resume:
        return None
    ckpt_dir = out_dir / "checkpoint"
    state = ckpt_dir / "state.json"
    if not os.path.lexists(state):
        left = _leftovers(out_dir)
        if left:
            shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4
                                           else "")
            raise InvalidArgumentError(
                f"{state} is missing, but {out_dir} holds an earlier run's {shown}; nothing "
                "was changed. To continue that run, restore state.json (it names the epoch "
                "file to resume from); to start over, pass --overwrite (overwrite=True), "
                "which replaces them; or train into another --out")
        if not opts.resume:
            return None
        if read_run(out_dir) is None:
            raise InvalidArgumentError(
                f"--resume: {out_dir} is not a finetune run folder (no run.json, no "
                "checkpoint/state.json); point --out at a run's folder, or drop --resume "
                "to start a new run")
        say(f"resume      no checkpoint in {ckpt_dir} yet: starting at epoch 1")
        return None
    ckpt = _read_checkpoint(ckpt_dir)
    if not opts.resume:
        raise InvalidArgumentError(
            f"{out_dir} holds a checkpoint of an earlier run (epoch {ckpt['epoch']}); pass "
            "resume=True (--resume) to continue it, overwrite=True (--overwrite) to start "
            "over, or choose another output folder")
    done = int(ckpt["epoch"])
    target = int(ckpt.get("epochs", ckpt.get("signature", {}).get("epochs", done)))
    finished = bool(ckpt.get("finished", done >= target))
    if opts.epochs and opts.epochs < done:
        raise InvalidArgumentError(
            f"--epochs {opts.epochs}: the run in {out_dir} has already trained {done} "
            f"epochs; pass --epochs {done + 1} or more to extend it")
    if finished and (not opts.epochs or opts.epochs <= target):
        how = (f"stopped early after epoch {done} of {target}" if ckpt.get("stopped_early")
               else f"trained all its {target} epochs")
        raise InvalidArgumentError(
            f"--resume: the run in {out_dir} is finished ({how}); to train it further pass "
            f"--epochs N with N > {target} (Python: epochs=N), or --overwrite to start over")
    return ckpt
