"""zoo_core.finetune: fine-tune a zoo model on an image folder, with a measured ``auto``.

One call runs the whole job::

    model, result = zoo_core.finetune("zoonet_s")            # embedded digits 5-9
    model, result = zoo_core.finetune("resnet18", "data/", strategy="auto", out="runs/r18")

Pipeline, top to bottom in :func:`finetune`:

1. **data** — ``data=None`` exports the embedded target task (scikit-learn digits 5-9,
   10 training images per class) into the cache; a directory is scanned by
   :func:`zoo_core._data.scan_image_folder` (bad-data policy documented there).
2. **strategy** — ``auto`` measures, then decides (:mod:`zoo_core._finetune.auto`): a
   cross-validated probe on pretrained and on random-init features of a class-balanced
   training sample, images per class and the spread; :func:`zoo_core._decide.decide`
   places the data in a cell of the transfer-learning table and picks among
   ``linear_probe``, ``partial:1``, ``finetune`` and ``scratch``, with a short pilot
   where two are close. Data with nothing to learn from (both probes near chance, scarce)
   raises :class:`~zoo_core.TransferNotRecommendedError` carrying the figures
   (``exc.figures``) unless ``force=True`` (then ``finetune``).
3. **preprocessing** — from the model's data config through timm
   (``resolve_data_config`` + ``create_transform``); augmentation is off by default.
4. **training** — AdamW on :func:`zoo_core.param_groups`, cosine learning rate per
   epoch, cross entropy. With ``linear_probe`` (and no augmentation) the frozen part of
   the model runs **once per image**: the input of the head module is captured with a
   forward pre-hook (in eval mode) and cached, then only the head is trained on the
   cached tensors — same batches, same order, same result as the naive loop (tested).
   ``partial:K``, ``finetune`` and ``scratch`` use the normal loop (caching applies to
   ``linear_probe`` only). In ``linear_probe`` the whole model except the head runs in
   eval mode in both paths (a frozen feature extractor: no dropout, BN frozen).
5. **outputs** (``out=DIR``, rank 0 only) — ``metrics.json`` and ``metrics.csv``
   rewritten every epoch, ``curves.png`` (loss and accuracy), ``best/`` (the best
   validation epoch via :func:`zoo_core._hub.save_pretrained`: ``model.safetensors`` +
   ``config.json`` + ``README.md``), ``checkpoint/`` (every epoch: model, optimizer,
   epoch, RNG states; tensors in safetensors, the rest JSON, each file written to a
   temporary name and renamed; ``state.json`` is the commit point), and optionally a
   push of ``best`` to the Hub.
6. **multi-process** — under ``torchrun --nproc-per-node N`` the job runs with
   DistributedDataParallel (gloo on CPU, nccl on GPU) and a DistributedSampler;
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
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core._finetune.auto import _decide
from zoo_core._finetune.checkpoint import _read_checkpoint, _restore, _rng_state, _save_checkpoint
from zoo_core._finetune.defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR
from zoo_core._finetune.dist import _Dist
from zoo_core._finetune.report import _plot, _push, _save_best, _write_metrics
from zoo_core._finetune.results import EpochMetrics, FinetuneResult
from zoo_core._finetune.trainer import _Trainer
from zoo_core._finetune.utils import _lr_at, _Printer, _seed_all, _set_input_size
from zoo_core.errors import InvalidArgumentError, TransferNotRecommendedError, ZooError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# Test hook: after the checkpoint of epoch N is written, exit hard (os._exit) as a crash.
EXIT_AFTER_EPOCH_ENV = "ZOO_FINETUNE_EXIT_AFTER_EPOCH"
EXIT_CODE = 75


def _parse_input_size(value: Any) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (3, value, value)
    try:
        size = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        size = ()
    if len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or min(size) < 1:
        raise InvalidArgumentError(f"input_size must be S, (H, W) or (C, H, W), got {value!r}")
    return size  # type: ignore[return-value]


def _check_args(epochs: int, batch_size: int, lr: float | None, val_fraction: float,
                world: int) -> None:
    def positive_int(name: str, v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidArgumentError(f"{name} must be a positive int, got {v!r}")

    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise InvalidArgumentError(f"lr must be a positive number, got {lr!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidArgumentError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if batch_size % world:
        raise InvalidArgumentError(
            f"batch_size {batch_size} is the global batch and must divide evenly across "
            f"{world} processes; use a multiple of {world}")


def finetune(
    model: str = "zoonet_s",
    data: str | os.PathLike[str] | None = None,
    *,
    strategy: str = "auto",
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    per_class: int | None = None,
    weights: Any = "default",
    cache_features: bool = True,
    augment: bool | Mapping[str, Any] = False,
    push_to_hub: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    num_workers: int = 0,
    device: Any = None,
    progress: bool = True,
    verbose: bool = True,
    force: bool = False,
    sync_bn: bool = False,
    input_size: int | Sequence[int] | None = None,
) -> tuple[nn.Module, FinetuneResult]:
    """Fine-tune ``model`` on an image folder; return ``(model, FinetuneResult)``.

    ``model``: a zoo model name (``zoonet_s``, ``resnet18``, ``hf-hub:org/repo``...).
    ``data``: an ImageFolder tree (``DIR/<class>/*`` or ``DIR/train|val/<class>/*``);
    ``None`` uses the embedded digits 5-9 with ``per_class`` (default 10) training images
    per class. ``strategy``: ``auto`` (measured, see the module doc), ``linear_probe``,
    ``finetune``, ``partial:K`` or ``scratch``. ``batch_size`` is the global batch.
    ``lr`` defaults per strategy (:data:`DEFAULT_LR`, AdamW, cosine per epoch).
    ``out``: where metrics, curves, the best model and the checkpoint go (``None``: no
    files). ``resume``: continue from ``out/checkpoint`` (same arguments required);
    without it an existing checkpoint is refused unless ``overwrite``.
    ``cache_features`` (``linear_probe`` only): run the frozen backbone once per image.
    ``augment``: timm's training transform (``True``) or overrides for
    ``timm.data.create_transform`` (a mapping); it forces the per-epoch loop.
    ``push_to_hub``: ``org/name`` to push the best model to when done (rank 0).
    ``force`` fine-tunes when ``auto`` finds nothing to learn instead of raising
    :class:`~zoo_core.TransferNotRecommendedError`. ``input_size`` (``S`` or
    ``(3, H, W)``) overrides the model's data-config input size (recorded in
    ``model.zoo.data_config``, hence in the saved config).
    """
    wall_start = time.perf_counter()
    ctx = _Dist(device)
    try:
        return _finetune(
            ctx, wall_start, model, data, strategy=strategy, epochs=epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, out=out, seed=seed,
            val_fraction=val_fraction, per_class=per_class, weights=weights,
            cache_features=cache_features, augment=augment, push_to_hub=push_to_hub,
            resume=resume, overwrite=overwrite, num_workers=num_workers, progress=progress,
            verbose=verbose, force=force,
            sync_bn=sync_bn, input_size=input_size)
    finally:
        ctx.close()


def make_pilot(model_name: str, **kwargs: Any) -> Any:
    """auto's pilot runner: ``pilot(strategy, folder, epochs)`` -> final holdout accuracy of
    a quiet, file-less :func:`finetune` run on an already split folder."""
    def pilot(strategy: str, folder: Any, epochs: int) -> float:
        _, res = finetune(model_name, folder, strategy=strategy, epochs=epochs,
                          progress=False, verbose=False, **kwargs)
        return res.final_val_acc

    return pilot


def _finetune(ctx: _Dist, wall_start: float, model_name: str, data: Any, *, strategy: str,
              epochs: int, batch_size: int, lr: float | None, weight_decay: float,
              out: Any, seed: int, val_fraction: float, per_class: int | None, weights: Any,
              cache_features: bool, augment: Any, push_to_hub: str | None, resume: bool,
              overwrite: bool, num_workers: int, progress: bool, verbose: bool,
              force: bool, sync_bn: bool,
              input_size: Any = None) -> tuple[nn.Module, FinetuneResult]:
    import torch

    from zoo_core._builder import build_model
    from zoo_core._data import (
        BadImageWarning,
        FolderData,
        ImageDataset,
        embedded_dataset,
        make_transforms,
        scan_image_folder,
    )
    from zoo_core._strategies import param_groups, parse_strategy

    say = _Printer(verbose and ctx.main)
    if not isinstance(model_name, str):
        raise InvalidArgumentError(
            f"model must be a model name such as 'zoonet_s' or 'hf-hub:org/name', got "
            f"{type(model_name).__name__}; finetune builds the model itself")
    _check_args(epochs, batch_size, lr, val_fraction, ctx.world)
    requested = parse_strategy(strategy)
    size = _parse_input_size(input_size)

    # 1. outputs and an earlier run's checkpoint
    out_dir = Path(out).expanduser() if out is not None else None
    ckpt_dir = out_dir / "checkpoint" if out_dir is not None else None
    if resume and out_dir is None:
        raise InvalidArgumentError("resume=True needs out=DIR (the run's output folder)")
    ckpt = _read_checkpoint(ckpt_dir) if ckpt_dir is not None else None
    if ckpt is not None and not resume and not overwrite:
        raise InvalidArgumentError(
            f"{out_dir} holds a checkpoint of an earlier run (epoch {ckpt['epoch']}); pass "
            "resume=True (--resume) to continue it, overwrite=True (--overwrite) to start "
            "over, or choose another output folder")
    if not resume:
        ckpt = None
    elif ckpt is None:
        say(f"resume      no checkpoint in {ckpt_dir} yet: starting at epoch 1")
    # 2. data
    if isinstance(data, FolderData):  # already scanned (auto's pilot)
        folder, source = data, data.split
    elif data is None:
        if ctx.main:
            embedded_dataset(per_class, seed=0)
        ctx.barrier()
        root = embedded_dataset(per_class, seed=0)
        source = (f"embedded: scikit-learn digits 5-9, {per_class or 10} training images per "
                  "class")
    else:
        if per_class is not None:
            raise InvalidArgumentError("per_class applies to the embedded dataset only "
                                       "(data=None)")
        root = Path(data)
        source = str(root)
    if not isinstance(data, FolderData):
        with warnings.catch_warnings():
            if not ctx.main:
                warnings.simplefilter("ignore")
            folder = scan_image_folder(root, val_fraction=val_fraction, seed=seed,
                                       warn=ctx.main)
    classes = folder.classes
    say(f"data        {source}: {len(folder.train)} train / {len(folder.val)} val images, "
        f"{folder.num_classes} classes ({folder.split})")

    # 3. strategy
    forced = False
    figures: dict[str, Any] = {"num_train": len(folder.train),
                               "num_classes": folder.num_classes,
                               "per_class": len(folder.train) / folder.num_classes}
    if ckpt is not None:
        kind_str, reason = ckpt["strategy"], ckpt["reason"]
        forced, figures = bool(ckpt.get("forced")), dict(ckpt.get("figures") or figures)
        say(f"resume      from {ckpt_dir} after epoch {ckpt['epoch']}; strategy {kind_str}")
    elif requested.kind == "auto":
        decision: Any = None
        if ctx.main:
            try:
                pilot = make_pilot(model_name, batch_size=batch_size, seed=seed,
                                   weight_decay=weight_decay, weights=weights,
                                   num_workers=num_workers, device=ctx.device,
                                   input_size=input_size)
                decision = _decide(model_name, folder, weights=weights, seed=seed,
                                   force=force, device=ctx.device, num_workers=num_workers,
                                   say=say, input_size=size, epochs=epochs,
                                   pilot=None if ctx.active else pilot, progress=progress)
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
        kind_str, reason, forced, figures = decision
    else:
        kind_str, reason = str(requested), f"chosen by the caller: {requested}"
        say(f"strategy    {kind_str} (chosen by the caller)")
    kind = parse_strategy(kind_str)
    # the run folder exists only once training is about to start
    if ctx.main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and ckpt_dir is not None and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
    ctx.barrier()

    # 4. model, transforms, datasets
    _seed_all(seed)
    net_model = build_model(
        model_name, folder.num_classes, kind_str,
        weights="default" if kind.kind == "scratch" else weights,
        label_names=classes, device=ctx.device)
    net_model.zoo = net_model.zoo.replace(strategy_reason=reason)  # type: ignore[union-attr]
    _set_input_size(net_model, size)
    if ctx.active:
        _seed_all(seed + 1000 * ctx.rank)
    train_tf, eval_tf = make_transforms(net_model, augment)
    train_ds = ImageDataset(folder.train, train_tf)
    val_ds = ImageDataset(folder.val, eval_tf)
    lr_base = float(lr) if lr is not None else DEFAULT_LR[kind.kind]

    cached = kind.kind == "linear_probe" and cache_features and not augment
    if kind.kind == "linear_probe" and augment and cache_features:
        say("features    augment=True: every epoch sees new random crops, so the frozen "
            "backbone runs on every image every epoch (slow path, no feature cache)")
    trainer = _Trainer(model=net_model, kind=kind.kind, ctx=ctx, train_ds=train_ds,
                       val_ds=val_ds, batch_size=batch_size, num_workers=num_workers,
                       seed=seed, cached=cached, progress=progress)
    if cached and not trainer.prepare_cache(say):
        trainer.cached = cached = False
        say("features    the model's output is not its head applied to the head's input "
            "(or the head takes several inputs), so features cannot be cached; running "
            "the full loop")
    if kind.kind == "linear_probe" and not cached and not augment and not cache_features:
        say("features    cache disabled (cache_features=False): the frozen backbone runs "
            "every epoch")
    path_note = ("linear_probe with cached head inputs: backbone ran once per image, "
                 "only the head trained" if cached else
                 f"{kind_str}: full forward/backward loop every epoch"
                 + (" with augmentation" if augment else ""))
    trainer.wrap(sync_bn)
    opt = torch.optim.AdamW(param_groups(net_model, weight_decay=weight_decay), lr=lr_base)

    signature = {
        "model": model_name, "strategy": kind_str, "classes": list(classes), "seed": seed,
        "batch_size": batch_size, "lr": lr_base, "weight_decay": weight_decay,
        "epochs": epochs, "num_train": len(folder.train), "num_val": len(folder.val),
        "augment": bool(augment) if not isinstance(augment, Mapping) else dict(augment),
        "input_size": list(net_model.zoo.data_config.input_size),
    }
    history: list[EpochMetrics] = []
    start_epoch = 1
    resumed_from = None
    if ckpt is not None:
        old = ckpt.get("signature", {})
        diff = {k: (old.get(k), v) for k, v in signature.items() if old.get(k) != v}
        if diff:
            raise InvalidArgumentError(
                f"cannot resume {out_dir}: the run differs from the checkpoint in "
                + ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in diff.items())
                + "; rerun with the same arguments, or pass overwrite=True to start over")
        _restore(ckpt, net_model, opt, ctx)
        history = [EpochMetrics(**m) for m in ckpt["history"]]
        start_epoch = int(ckpt["epoch"]) + 1
        resumed_from = int(ckpt["epoch"])

    header = {"model": model_name, "strategy": kind_str, "requested_strategy": str(requested),
              "reason": reason, "forced": forced, "figures": figures, "data": source,
              "classes": list(classes), "path": path_note}
    training_data = {"name": source if data is None else Path(folder.root).name,
                     "classes": list(classes), "num_train": len(folder.train),
                     "num_val": len(folder.val), "split": folder.split}
    exit_after = int(os.environ.get(EXIT_AFTER_EPOCH_ENV, "0") or 0)
    best_acc = max((m.val_acc for m in history), default=-1.0)
    train_seconds = 0.0
    trained_images = 0
    say(f"training    {path_note}; {epochs} epochs, global batch {batch_size}, AdamW lr "
        f"{lr_base:g} (cosine), {ctx.world} process(es) on {ctx.device}")
    for epoch in range(start_epoch, epochs + 1):
        lr_now = _lr_at(lr_base, epoch, epochs)
        for group in opt.param_groups:
            group["lr"] = lr_now
        t0 = time.perf_counter()
        tr_loss, tr_acc, n_seen = trainer.train_epoch(opt, epoch, epochs)
        t_train = time.perf_counter() - t0
        va_loss, va_acc, _ = trainer.evaluate()
        seconds = time.perf_counter() - t0
        train_seconds += t_train
        trained_images += n_seen
        metrics = EpochMetrics(epoch, tr_loss, tr_acc, va_loss, va_acc, lr_now,
                               round(seconds, 4), n_seen / t_train if t_train > 0 else 0.0)
        history.append(metrics)
        improved = va_acc > best_acc
        best_acc = max(best_acc, va_acc)
        say(f"epoch {epoch:>3}/{epochs}  train loss {tr_loss:.4f} acc {tr_acc:.3f}  "
            f"val loss {va_loss:.4f} acc {va_acc:.3f}  lr {lr_now:.2e}  {seconds:.2f}s"
            + ("  *best" if improved else ""))
        rng_states = ctx.gather_objects(_rng_state(ctx.device)) if out_dir is not None else []
        if ctx.main and out_dir is not None:
            _write_metrics(out_dir, history, header)
            if improved:
                _save_best(net_model, out_dir / "best",
                           metrics={"val_accuracy": va_acc, "val_loss": va_loss,
                                    "epoch": epoch, "epochs": epochs},
                           training_data=training_data)
            assert ckpt_dir is not None
            _save_checkpoint(ckpt_dir, epoch=epoch, model=net_model, opt=opt,
                             rng_states=rng_states, meta={
                                 "strategy": kind_str, "reason": reason, "forced": forced,
                                 "figures": figures, "signature": signature,
                                 "history": [m.as_dict() for m in history]})
        ctx.barrier()
        if exit_after and epoch == exit_after:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_CODE)

    # 5. wrap up: curves, skipped images, push
    bad = {}
    for part in ctx.gather_objects(trainer.bad):
        bad.update(part)
    skipped = tuple(folder.skipped) + tuple(sorted(bad.items()))
    if bad and ctx.main:
        from zoo_core._data import _fmt_skipped

        warnings.warn(f"skipped {len(bad)} image(s) that failed to decode during training: "
                      f"{_fmt_skipped(sorted(bad.items()))}", BadImageWarning, stacklevel=2)
    files: dict[str, str | None] = dict.fromkeys(
        ("metrics_json", "metrics_csv", "plot_png", "best_dir", "checkpoint_dir"))
    hub_url = None
    if out_dir is not None:
        files.update(metrics_json=str(out_dir / "metrics.json"),
                     metrics_csv=str(out_dir / "metrics.csv"),
                     plot_png=str(out_dir / "curves.png"), best_dir=str(out_dir / "best"),
                     checkpoint_dir=str(ckpt_dir))
        if ctx.main and history:
            _write_metrics(out_dir, history, header)
            _plot(out_dir / "curves.png", history,
                  f"{model_name} · {kind_str} · {len(folder.train)} train images")
    if push_to_hub and ctx.main:
        hub_url = _push(net_model, push_to_hub, out_dir, history, training_data, say)
    hub_url = ctx.broadcast(hub_url)
    ctx.barrier()

    best = max(history, key=lambda m: (m.val_acc, -m.epoch))
    total_train = train_seconds + trainer.feature_seconds
    result = FinetuneResult(
        model=model_name, strategy=kind_str, requested_strategy=str(requested), reason=reason,
        forced=forced, figures=figures, history=tuple(history), best_val_acc=best.val_acc,
        best_epoch=best.epoch, final_val_acc=history[-1].val_acc,
        wall_seconds=time.perf_counter() - wall_start, train_seconds=total_train,
        images_per_s=trained_images / total_train if total_train > 0 else 0.0,
        feature_cache=cached, path=path_note, num_classes=folder.num_classes,
        label_names=tuple(classes), num_train=len(folder.train), num_val=len(folder.val),
        skipped=skipped, out_dir=str(out_dir) if out_dir is not None else None,
        hub_url=hub_url, resumed_from_epoch=resumed_from, world_size=ctx.world,
        device=str(ctx.device), extra={"feature_seconds": trainer.feature_seconds,
                                       "lr": lr_base, "data_root": folder.root},
        **files,
    )
    if ctx.main and out_dir is not None:
        say(f"outputs     {out_dir} (metrics.json, metrics.csv, curves.png, best/, "
            "checkpoint/)")
    net_model.eval()
    return net_model, result
