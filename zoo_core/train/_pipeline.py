"""zoo_core.finetune: fine-tune a zoo model on an image folder, with a measured ``auto``.

One call runs the whole job::

    model, result = zoo_core.finetune("zoonet_s")            # embedded digits 5-9
    model, result = zoo_core.finetune("resnet18", "data/", strategy="auto", out="runs/r18")

Pipeline, top to bottom in :func:`finetune`:

1. **data** — ``data=None`` exports the embedded target task (scikit-learn digits 5-9,
   10 training images per class) into the cache; a directory is scanned by
   :func:`zoo_core.data._data.scan_image_folder` (bad-data policy documented there).
2. **strategy** — ``auto`` measures, then decides (:mod:`zoo_core.train._auto`): a
   cross-validated probe on pretrained and on random-init features of a class-balanced
   training sample, images per class and the spread; :func:`zoo_core.strategies._decide.decide`
   places the data in a cell of the transfer-learning table and picks among
   ``linear_probe``, ``partial:1``, ``finetune`` and ``scratch``, with a short pilot
   where two are close. Data with nothing to learn from (no probe above its
   label-permutation baseline, nor a pilot above chance where images can be held out)
   raises :class:`~zoo_core.TransferNotRecommendedError` carrying the figures
   (``exc.figures``) unless ``force=True`` (then ``finetune``).
3. **preprocessing** — from the model's data config through timm
   (``resolve_data_config`` + ``create_transform``); augmentation is off by default.
4. **training** — timm's recipe (:mod:`._recipe`: AdamW/SGD through
   ``create_optimizer_v2`` over the trainable parameters, cosine with warmup, label
   smoothing, optional Mixup/CutMix and EMA) on accelerate (:mod:`._dist`: device,
   launcher, ``precision`` 32/bf16/fp16, DDP), ``accumulate`` micro-batches per step.
   With ``linear_probe`` (and no augmentation) the frozen part of
   the model runs **once per image**: the input of the head module is captured with a
   forward pre-hook (in eval mode) and cached, then only the head is trained on the
   cached tensors — same batches, same order, same result as the naive loop (tested).
   ``partial:K``, ``finetune`` and ``scratch`` use the normal loop (caching applies to
   ``linear_probe`` only). In ``linear_probe`` the whole model except the head runs in
   eval mode in both paths (a frozen feature extractor: no dropout, BN frozen).
5. **outputs** (``out=DIR``, rank 0 only) — ``run.json`` (every hyperparameter, the
   strategy and why, the data folder and a hash of its file list, package versions),
   ``metrics.json`` and ``metrics.csv`` and ``curves.png`` rewritten every epoch,
   ``best/`` (the best validation epoch via :func:`zoo_core.hub._hub.save_pretrained`:
   ``model.safetensors`` + ``config.json`` + ``README.md`` carrying the run record),
   ``checkpoint/`` (written after every epoch: model, optimizer, epoch, RNG states; the
   latest epoch is kept for resuming plus the best ``keep`` epochs; tensors in
   safetensors, the rest JSON, each file written to a temporary name and renamed;
   ``state.json`` is the commit point and records the tensors' sha256), ``split.json``
   (:mod:`._split_record`), TensorBoard events with ``log_with="tensorboard"``, and
   optionally a push of ``best`` to the Hub. OUT is locked while the run writes it
   (:mod:`._lock`); ``resume`` reads the run's arguments back (:mod:`._resume`).
6. **multi-process** — under ``torchrun --nproc-per-node N`` or ``accelerate launch
   --num_processes N`` the job runs with accelerate's DistributedDataParallel (gloo on
   CPU, nccl on GPU) and a DistributedSampler;
   ``batch_size`` is the *global* batch (each rank takes ``batch_size // N``), so the
   optimisation equals a single-process run over the same global batches. BatchNorm
   layers that train see each rank's local batch (their running statistics are averaged
   across ranks at the end of every epoch; ``sync_bn=True`` converts them to
   SyncBatchNorm on GPUs). Frozen BatchNorm (``linear_probe``, frozen stages of
   ``partial:K``) is unaffected, so those runs match a single process exactly.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError, TransferNotRecommendedError, ZooError
from zoo_core.layout._model_args import check_caller_args
from zoo_core.train._args import check_args, check_race, default_threads, parse_input_size
from zoo_core.train._auto import _decide
from zoo_core.train._balance import check_balance, note_imbalance
from zoo_core.train._checkpoint import _restore
from zoo_core.train._defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    default_epochs,
)
from zoo_core.train._dist import _Dist
from zoo_core.train._lock import held_run_lock
from zoo_core.train._loop import EXIT_AFTER_EPOCH_ENV, EXIT_CODE, LoopConfig, LoopState
from zoo_core.train._loop import run_epochs as _run_epochs
from zoo_core.train._lr_find import auto_lr
from zoo_core.train._options import _Options
from zoo_core.train._probe import SOLVERS
from zoo_core.train._recipe import Recipe
from zoo_core.train._report import _plot, _push, _write_metrics
from zoo_core.train._results import FinetuneResult
from zoo_core.train._resume import explicit_arguments, open_checkpoint, record_arguments
from zoo_core.train._runners import make_pilot, make_race
from zoo_core.train._runtime import resolve_runtime
from zoo_core.train._setup import build_run, prepare_training, train_lp_head
from zoo_core.train._speed import resolve_speed
from zoo_core.train._split_record import write_split
from zoo_core.train._trackers import parse_log_with, start_trackers
from zoo_core.train._utils import _Printer, writing

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["EXIT_AFTER_EPOCH_ENV", "EXIT_CODE", "finetune"]


@explicit_arguments
def finetune(
    model: str = "zoonet_s",
    data: str | os.PathLike[str] | None = None,
    *,
    strategy: str = "auto",
    epochs: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float | str | None = None,
    weight_decay: float = 1e-4,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    per_class: int | None = None,
    weights: Any = "default",
    cache_features: bool = True,
    augment: bool | Mapping[str, Any] = False,
    push_to_hub: str | None = None,
    resume: bool | str | os.PathLike[str] = False,
    overwrite: bool = False,
    num_workers: int | None = None,
    device: Any = None,
    progress: bool = True,
    verbose: bool = True,
    force: bool = False,
    sync_bn: bool = False,
    input_size: int | Sequence[int] | None = None,
    precision: str = "32",
    accumulate: int = 1,
    threads: int | None = None,
    recipe: Recipe | Mapping[str, Any] | None = None,
    early_stop: int | None = None,
    keep: int = 1,
    log_with: str | None = None,
    lp_epochs: int | None = None,
    probe_solver: str = "lbfgs",
    channels_last: bool | str | None = None,
    compile: bool | str | None = None,
    balance: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    race: float | None = None,
) -> tuple[nn.Module, FinetuneResult]:
    """Fine-tune ``model`` on an image folder; return ``(model, FinetuneResult)``.

    ``model``: a zoo model name (``zoonet_s``, ``resnet18``, ``hf-hub:org/repo``...).
    ``data``: an ImageFolder tree (``DIR/<class>/*`` or ``DIR/train|val/<class>/*``);
    ``None`` uses the embedded digits 5-9 with ``per_class`` (default 10) training images
    per class. ``strategy``: ``auto`` (measured, see the module doc), ``linear_probe``,
    ``finetune``, ``partial:K``, ``lp_ft`` or ``scratch``. ``epochs``: default per
    strategy (:func:`~zoo_core.train._defaults.default_epochs`). ``batch_size`` is the
    global batch; ``accumulate`` micro-batches make one optimizer step.
    ``lr`` defaults per strategy (:data:`DEFAULT_LR`); ``"auto"`` runs the LR range test
    (:mod:`._lr_find`) and trains with its suggestion; ``recipe`` (a
    :class:`~zoo_core.train._recipe.Recipe` or a mapping of its fields: optimizer,
    layer decay, warmup, label smoothing, Mixup/CutMix, EMA) and ``weight_decay`` shape
    the optimisation. ``precision``: ``32``, ``bf16`` (CPU or GPU) or ``fp16`` (GPU).
    ``threads``: torch CPU threads during the run (default :func:`default_threads`).
    ``out``: where the run's files go (``None``: no files; one run at a time: the folder
    is locked while a run writes it). ``resume``: continue ``out/checkpoint`` (``True``,
    or the run folder itself); the model, data and every hyperparameter come from the
    run's ``run.json``, only ``epochs`` may change (a larger value extends a finished
    run) and any other argument given that differs from the record is refused; without
    it an existing checkpoint is refused unless ``overwrite``. ``early_stop``: stop after this
    many epochs without a better validation accuracy. ``keep``: checkpoints of the best
    ``keep`` epochs stay next to the latest. ``log_with``: also log to trackers
    (``tensorboard``, ``mlflow``, ``wandb``, ``aim``, ``csv``; several comma-separated).
    ``cache_features`` (``linear_probe``, ``lp_ft``'s first phase): run the frozen
    backbone once per image. ``augment``: timm's training transform (``True``) or
    overrides for ``timm.data.create_transform`` (a mapping); it forces the per-epoch
    loop. ``lp_epochs``: ``lp_ft``'s head-only epochs. ``push_to_hub``: ``org/name`` to
    push the best model to when done (rank 0). ``force`` fine-tunes when ``auto``
    refuses.
    ``input_size`` (``S`` or ``(3, H, W)``) overrides the model's input size.
    ``channels_last`` (``auto``: on CUDA) and ``compile`` (``True`` or a torch.compile
    backend): :mod:`._speed`.
    ``num_workers``: DataLoader workers (default :func:`._runtime.default_workers`).
    ``balance``: ``"sampler"`` or ``"loss"`` for imbalanced classes (:mod:`._balance`).
    ``model_kwargs``: passed to the model's builder (``in_chans``, ``drop_path_rate``...),
    as :func:`zoo_core.build_model`'s keyword arguments; recorded and restored on resume.
    ``race`` (``auto`` only; default ``[auto] race_fraction``, 0: off): race the table's
    strategies for this share of their epochs, train the best on validation (:mod:`._race`).
    """
    import torch

    wall_start = time.perf_counter()
    check_args(epochs=epochs if epochs is not None else 1, batch_size=batch_size,
               lr=None if lr == "auto" else lr,
               val_fraction=val_fraction, world=1, accumulate=accumulate, keep=keep,
               early_stop=early_stop, threads=threads, num_workers=num_workers or 0)
    if lp_epochs is not None:
        check_args(epochs=lp_epochs, batch_size=1, lr=None, val_fraction=0.0, world=1,
                   accumulate=1, keep=1, early_stop=None, threads=None, num_workers=0)
    if probe_solver not in SOLVERS:
        raise InvalidArgumentError(f"--probe-solver must be one of {', '.join(SOLVERS)}, got "
                                   f"{probe_solver!r}")
    check_race(race, strategy)
    log_with = parse_log_with(log_with, out)
    balance = check_balance(balance)
    model_args = check_caller_args(dict(model_kwargs or {}), str(model))
    opts = _Options(
        model=model, data=data, strategy=strategy, epochs=epochs or 0,
        batch_size=batch_size, lr=lr, out=Path(out).expanduser() if out is not None else None,
        seed=seed, val_fraction=val_fraction, per_class=per_class, weights=weights,
        cache_features=cache_features, augment=augment, push_to_hub=push_to_hub,
        resume=bool(resume), overwrite=overwrite, num_workers=num_workers, progress=progress,
        verbose=verbose, force=force,
        sync_bn=sync_bn, input_size=parse_input_size(input_size), precision=str(precision),
        accumulate=accumulate,
        threads=threads or default_threads(model if isinstance(model, str) else None,
                                            parse_input_size(input_size)),
        recipe=Recipe.build(recipe, **(
            {} if isinstance(recipe, Recipe) or (isinstance(recipe, Mapping)
                                                 and "weight_decay" in recipe)
            else {"weight_decay": weight_decay})), early_stop=early_stop,
        keep=keep, log_with=log_with, lp_epochs=lp_epochs, probe_solver=probe_solver,
        balance=balance, model_kwargs=model_args, race=race)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    ctx = _Dist(device, precision=opts.precision, project_dir=opts.out)
    try:
        opts.extra["speed"] = resolve_speed(channels_last, compile, ctx.device)
        opts = resolve_runtime(opts, ctx, num_workers)
        check_args(epochs=1, batch_size=batch_size, lr=None, val_fraction=0.0,
                   world=ctx.world, accumulate=1, keep=1, early_stop=None, threads=None,
                   num_workers=0)
        with held_run_lock(ctx, opts.out):
            return _finetune(ctx, wall_start, opts)
    finally:
        ctx.close()
        torch.set_num_threads(threads_before)


def _decide_strategy(ctx: _Dist, opts: _Options, folder: Any, say: _Printer,
                     requested: Any) -> tuple[str, str, bool, dict[str, Any]]:
    if requested.kind != "auto":
        say(f"strategy    {requested} (chosen by the caller)")
        return str(requested), f"chosen by the caller: {requested}", False, {
            "num_train": len(folder.train), "num_classes": folder.num_classes,
            "per_class": len(folder.train) / folder.num_classes}
    decision: Any = None
    if ctx.main:
        try:
            # pilots and racers train as the final run will (a racer's model is that
            # explicit run): the caller's settings, not the defaults
            same = dict(batch_size=opts.batch_size, seed=opts.seed, weights=opts.weights,
                        num_workers=opts.num_workers, device=ctx.device,
                        input_size=opts.input_size, precision=opts.precision,
                        threads=opts.threads, balance=opts.balance,
                        model_kwargs=opts.model_kwargs, lr=opts.lr, recipe=opts.recipe,
                        augment=opts.augment, accumulate=opts.accumulate,
                        probe_solver=opts.probe_solver, cache_features=opts.cache_features,
                        early_stop=opts.early_stop)
            pilot = None if ctx.active else make_pilot(finetune, opts.model, **same)
            race = None if ctx.active else make_race(finetune, opts.model,
                                                     opts.epochs or None, **same)
            decision = _decide(opts.model, folder, weights=opts.weights, seed=opts.seed,
                               force=opts.force, device=ctx.device,
                               num_workers=opts.num_workers, say=say,
                               input_size=opts.input_size, model_kwargs=opts.model_kwargs,
                               epochs=opts.epochs or DEFAULT_EPOCHS, pilot=pilot,
                               race=race, race_fraction=opts.race,
                               progress=opts.progress)
        except TransferNotRecommendedError as exc:
            decision = ("refused", str(exc), getattr(exc, "figures", {}))
        except BaseException as exc:
            ctx.broadcast(("error", f"{type(exc).__name__}: {exc}", None))
            raise
    decision = ctx.broadcast(decision)
    if decision[0] == "error":
        raise ZooError(f"rank 0 failed while deciding the strategy: {decision[1]}")
    if decision[0] == "refused":
        err = TransferNotRecommendedError(decision[1])
        err.figures = decision[2]  # type: ignore[attr-defined]
        raise err
    return tuple(decision)  # type: ignore[return-value]


def _finetune(ctx: _Dist, wall_start: float, opts: _Options) -> tuple[nn.Module, FinetuneResult]:
    from zoo_core.data._data import BadImageWarning, _fmt_skipped
    from zoo_core.strategies._strategies import parse_strategy
    from zoo_core.train._data import load_folder
    from zoo_core.train._run_record import (
        card_section,
        command_line,
        data_fingerprint,
        package_versions,
        read_run,
        write_run,
    )

    say = _Printer(opts.verbose and ctx.main)
    if not isinstance(opts.model, str):
        raise InvalidArgumentError(
            f"model must be a model name such as 'zoonet_s' or 'hf-hub:org/name', got "
            f"{type(opts.model).__name__}; finetune builds the model itself")
    requested = parse_strategy(opts.strategy)

    # 1. an earlier run's checkpoint, 2. data, 3. strategy
    ckpt = open_checkpoint(opts, say)
    folder, source = load_folder(ctx, opts.data, opts.per_class, opts.val_fraction, opts.seed)
    classes = folder.classes
    say(f"data        {source}: {len(folder.train)} train / {len(folder.val)} val images, "
        f"{folder.num_classes} classes ({folder.split})")
    note_imbalance(folder, opts.balance, say, ctx.main and folder is not opts.data)  # pilots: no
    if ckpt is not None:
        kind_str, reason = ckpt["strategy"], ckpt["reason"]
        forced, figures = bool(ckpt.get("forced")), dict(ckpt.get("figures") or {})
        say(f"resume      from {opts.out} after epoch {ckpt['epoch']}; strategy {kind_str}; "
            f"planned epochs {opts.epochs or ckpt.get('epochs')}")
    else:
        kind_str, reason, forced, figures = _decide_strategy(ctx, opts, folder, say, requested)
    kind = parse_strategy(kind_str)
    epochs = opts.epochs or (int(ckpt.get("epochs", 0)) if ckpt else 0) or \
        default_epochs(kind.kind)
    lr_base = float(opts.lr) if opts.lr not in (None, "auto") else DEFAULT_LR[kind.kind]

    # 4. model, data, recipe, accelerate (lp_ft: its head-only phase first)
    run = build_run(ctx, opts, folder, kind, reason, say)
    trainer, net_model = run.trainer, run.model
    lp_note = train_lp_head(ctx, opts, run, say) if kind.kind == "lp_ft" and ckpt is None \
        else None
    if trainer.solver:
        if opts.epochs and opts.epochs != 1:
            say(f"probe       the head is solved in one step, so --epochs {opts.epochs} does "
                "not apply (--probe-solver sgd trains it for epochs)")
        epochs = 1
    prepare_training(ctx, opts, run, lr_base, epochs)
    lr_found = None
    if opts.lr == "auto":  # the range test on the run's own optimizer (._lr_find)
        lr_base, lr_found = auto_lr(ctx, opts, run, ckpt=ckpt, default=lr_base, epochs=epochs,
                                    title=f"{opts.model} · {kind_str}", say=say)
    out_dir = opts.out
    if ctx.main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and (out_dir / "checkpoint").exists():
            shutil.rmtree(out_dir / "checkpoint")
        write_split(out_dir, folder, source, fresh=ckpt is None)
    ctx.barrier()
    signature = {
        "model": opts.model, "strategy": kind_str, "classes": list(classes),
        "seed": opts.seed, "batch_size": opts.batch_size, "lr": lr_base,
        "num_train": len(folder.train), "num_val": len(folder.val),
        "augment": opts.hyperparameters(kind_str, lr_base, epochs)["augment"],
        "input_size": list(net_model.zoo.data_config.input_size),
        "precision": opts.precision, "accumulate": opts.accumulate,
        "recipe": opts.recipe.as_dict(), "lp_epochs": opts.lp_epochs,
        "probe_solver": opts.probe_solver, "balance": opts.balance,
        "model_args": dict(opts.model_kwargs) or None,
    }
    state = LoopState()
    start_epoch, resumed_from = 1, None
    if ckpt is not None:
        old = ckpt.get("signature", {})
        diff = {k: (old.get(k), v) for k, v in signature.items() if old.get(k) != v}
        if diff:
            raise InvalidArgumentError(
                f"cannot resume {out_dir}: the run differs from the checkpoint in "
                + ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in diff.items())
                + "; rerun with the same arguments, or pass overwrite=True to start over")
        try:
            _restore(ckpt, net_model, run.opt, ctx, ema=run.ema.module if run.ema else None)
        except (KeyError, RuntimeError, ValueError, IndexError) as exc:
            raise InvalidArgumentError(
                f"the checkpoint {out_dir / 'checkpoint' / ckpt['tensors']} does not fit the "
                f"run's model and optimizer ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); nothing was changed. "
                "Start over with --overwrite, or train into another --out") from exc
        trainer.updates = int(ckpt.get("updates", 0))
        state = LoopState.from_meta(ckpt)
        start_epoch = resumed_from = int(ckpt["epoch"]) + 1
        resumed_from -= 1
        if start_epoch > epochs:
            raise InvalidArgumentError(
                f"--resume: the run in {out_dir} is finished: its head was solved in one "
                "step, there is nothing to extend (--probe-solver sgd trains for epochs)")
        if epochs > int(ckpt.get("epochs", epochs)):
            state.stale = 0
            say(f"resume      extending from {ckpt.get('epochs')} to {epochs} epochs (the "
                "cosine schedule is re-planned over the new total)")

    # 5. the record of the run, then the epochs
    data_hash = data_fingerprint(folder)
    earlier = read_run(out_dir) if ckpt is not None and out_dir is not None else None
    command, resumes = command_line(), []
    if earlier is not None:  # a resume: the run keeps its first command; this one is added
        resumes = [*earlier.get("resumes", []), {
            "command": command, "after_epoch": start_epoch - 1, "epochs": epochs,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
        command = earlier.get("command", command)
    record = {"command": command, "resumes": resumes,
              "arguments": record_arguments(opts, epochs),
              "strategy": kind_str, "reason": reason,
              "forced": forced, "figures": figures,
              "hyperparameters": {**opts.hyperparameters(kind_str, lr_base, epochs),
                                  **run.recipe.as_dict()},
              "data": {"source": source, **data_hash, "classes": list(classes),
                       "num_train": len(folder.train), "num_val": len(folder.val),
                       "split": folder.split},
              "lr_find": lr_found.as_dict() if lr_found is not None
              else (earlier or {}).get("lr_find"),
              "speed": opts.extra["speed"].as_dict(),
              "versions": package_versions(), "world_size": ctx.world,
              "device": str(ctx.device)}
    if ctx.main and out_dir is not None:
        with writing(out_dir / "run.json"):
            write_run(out_dir, record)
    start_trackers(ctx, opts.log_with, out_dir, record["hyperparameters"],
                   resuming=ckpt is not None)
    header = {"model": opts.model, "strategy": kind_str, "requested_strategy": str(requested),
              "reason": reason, "forced": forced, "figures": figures, "data": source,
              "classes": list(classes), "path": run.path_note, "run": record}
    training_data = {"name": source if opts.data is None else Path(folder.root).name,
                     "classes": list(classes), "num_train": len(folder.train),
                     "num_val": len(folder.val), "split": folder.split,
                     "files_sha256": data_hash["files_sha256"]}
    hint = (f"resume with: zoo finetune --resume {out_dir} (Python: resume=True)" if out_dir
            else "a run resumes only with --out DIR, where it keeps its checkpoints")
    cfg = LoopConfig(
        epochs=epochs, start_epoch=start_epoch, accumulate=opts.accumulate,
        early_stop=opts.early_stop, keep=opts.keep, out_dir=out_dir,
        title=f"{opts.model} · {kind_str} · {len(folder.train)} train images",
        meta={"strategy": kind_str, "reason": reason, "forced": forced, "figures": figures,
              "signature": signature},
        training_data=training_data, header=header, card=card_section(record),
        resume_hint=hint)
    say(f"training    {run.path_note}; {epochs} epochs, global batch {opts.batch_size}"
        + (f" x {opts.accumulate} accumulated" if opts.accumulate > 1 else "")
        + f", {opts.recipe.opt} lr {lr_base:g} (cosine"
        + (f", {opts.recipe.warmup_epochs} warmup" if opts.recipe.warmup_epochs else "")
        + f"), precision {opts.precision}, {ctx.world} process(es) on {ctx.device}, "
        f"{opts.threads} thread(s)")
    _run_epochs(cfg, state, ctx=ctx, trainer=trainer, model=net_model, opt=run.opt,
                scheduler=run.scheduler, ema=run.ema, say=say)
    trainer.unwrap()
    history = state.history

    # 6. wrap up: curves, skipped images, push
    bad: dict[str, str] = {}
    for part in ctx.gather_objects(trainer.bad):
        bad.update(part)
    skipped = tuple(folder.skipped) + tuple(sorted(bad.items()))
    if bad and ctx.main:
        warnings.warn(f"skipped {len(bad)} image(s) that failed to decode during training: "
                      f"{_fmt_skipped(sorted(bad.items()))}", BadImageWarning, stacklevel=2)
    files: dict[str, str | None] = dict.fromkeys(
        ("metrics_json", "metrics_csv", "plot_png", "best_dir", "checkpoint_dir"))
    hub_url = None
    if out_dir is not None:
        files.update(metrics_json=str(out_dir / "metrics.json"),
                     metrics_csv=str(out_dir / "metrics.csv"),
                     plot_png=str(out_dir / "curves.png"), best_dir=str(out_dir / "best"),
                     checkpoint_dir=str(out_dir / "checkpoint"))
        if ctx.main and history:
            with writing(out_dir / "metrics.json"):
                _write_metrics(out_dir, history, header)
            with writing(out_dir / "curves.png"):
                _plot(out_dir / "curves.png", history, cfg.title)
    if opts.push_to_hub and ctx.main:
        hub_url = _push(net_model, opts.push_to_hub, out_dir, history, training_data, say,
                        card=cfg.card)
    hub_url = ctx.broadcast(hub_url)
    ctx.barrier()

    best = max(history, key=lambda m: (m.val_acc, -m.epoch))
    total_train = state.train_seconds + trainer.feature_seconds
    extra = {"feature_seconds": trainer.feature_seconds, "lr": lr_base,
             "data_root": folder.root, "precision": opts.precision,
             "stopped_early": state.stopped_early, "threads": opts.threads}
    if lp_note is not None:
        extra["lp_phase"] = lp_note
    if trainer.solver_info:
        extra["probe"] = trainer.solver_info
    result = FinetuneResult(
        model=opts.model, strategy=kind_str, requested_strategy=str(requested), reason=reason,
        forced=forced, figures=figures, history=tuple(history), best_val_acc=best.val_acc,
        best_epoch=best.epoch, final_val_acc=history[-1].val_acc,
        wall_seconds=time.perf_counter() - wall_start, train_seconds=total_train,
        images_per_s=state.trained_images / total_train if total_train > 0 else 0.0,
        feature_cache=trainer.cached, path=run.path_note, num_classes=folder.num_classes,
        label_names=tuple(classes), num_train=len(folder.train), num_val=len(folder.val),
        skipped=skipped, out_dir=str(out_dir) if out_dir is not None else None,
        hub_url=hub_url, resumed_from_epoch=resumed_from, world_size=ctx.world,
        device=str(ctx.device), extra=extra, **files,
    )
    if ctx.main and out_dir is not None:
        say(f"outputs     {out_dir} (run.json, metrics.json, metrics.csv, curves.png, best/, "
            "checkpoint/)")
    net_model.eval()
    return net_model, result
