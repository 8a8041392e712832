"""zoo_core.finetune: fine-tune a zoo model on an image folder, with a measured ``auto``.

One call runs the whole job::

    model, result = zoo_core.finetune("zoonet_s")            # embedded digits 5-9
    model, result = zoo_core.finetune("resnet18", "data/", strategy="auto", out="runs/r18")

Pipeline, top to bottom in :func:`finetune`:

1. **data** — ``data=None`` exports the embedded target task (scikit-learn digits 5-9,
   10 training images per class) into the cache; a directory is scanned by
   :func:`zoo_core._data.scan_image_folder` (bad-data policy documented there).
2. **strategy** — ``auto`` measures the data size (training images per class against
   ``[auto] plenty_per_class``) and the *similarity* of the target data to the
   pretraining data, then applies :func:`zoo_core.decide_strategy`.
   Similarity is measured, not guessed (:func:`measure_similarity`): on up to 50
   training images per class, leave-one-out nearest-centroid accuracy of standardised
   head-input features from the **pretrained** backbone (``acc_pre``) is compared with
   the same accuracy on features of a **randomly initialised** backbone of the same
   architecture (``acc_rand``, mean over 3 initialisations)::

       similarity = clip((acc_pre - acc_rand) / (1 - acc_rand), 0, 1)

   i.e. the fraction of the headroom above the random-feature baseline that pretrained
   features close (1 when random features are already perfect and pretrained ones too).
   Scarce and dissimilar data raises :class:`~zoo_core.TransferNotRecommendedError`
   carrying the figures (``exc.figures``) unless ``force=True`` (then ``finetune``).
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

import argparse
import atexit
import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import (
    InvalidArgumentError,
    StrategyError,
    TransferNotRecommendedError,
    ZooError,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo_core._data import FolderData

__all__ = ["EpochMetrics", "FinetuneResult", "add_cli", "finetune", "measure_similarity",
           "run_default"]

# Defaults per strategy kind: AdamW learning rate. One epoch count for all.
DEFAULT_LR = {"linear_probe": 3e-2, "partial": 3e-3, "finetune": 1e-3, "scratch": 3e-3}
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 16
MEASURE_PER_CLASS = 50
MEASURE_MAX_IMAGES = 1000
RANDOM_INITS = 3  # random-feature baseline: mean over this many initialisations
CHECKPOINT_FORMAT = 1
# Test hook: after the checkpoint of epoch N is written, exit hard (os._exit) as a crash.
EXIT_AFTER_EPOCH_ENV = "ZOO_FINETUNE_EXIT_AFTER_EPOCH"
EXIT_CODE = 75


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EpochMetrics:
    """Figures of one epoch (``epoch`` counts from 1)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneResult:
    """What a :func:`finetune` run did and measured."""

    model: str
    strategy: str
    requested_strategy: str
    reason: str
    forced: bool
    figures: Mapping[str, Any]
    history: tuple[EpochMetrics, ...]
    best_val_acc: float
    best_epoch: int
    final_val_acc: float
    wall_seconds: float
    train_seconds: float
    images_per_s: float
    feature_cache: bool
    path: str  # how training ran, in words
    num_classes: int
    label_names: tuple[str, ...]
    num_train: int
    num_val: int
    skipped: tuple[tuple[str, str], ...] = ()
    out_dir: str | None = None
    metrics_json: str | None = None
    metrics_csv: str | None = None
    plot_png: str | None = None
    best_dir: str | None = None
    checkpoint_dir: str | None = None
    hub_url: str | None = None
    resumed_from_epoch: int | None = None
    world_size: int = 1
    device: str = "cpu"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"model      {self.model}  ({self.num_classes} classes, {self.num_train} train / "
            f"{self.num_val} val images)",
            f"strategy   {self.strategy}{' (forced)' if self.forced else ''}: {self.reason}",
            f"training   {self.path}",
            f"best       val acc {self.best_val_acc:.4f} at epoch {self.best_epoch}/"
            f"{len(self.history)} (final {self.final_val_acc:.4f})",
            f"time       {self.wall_seconds:.1f} s wall, {self.images_per_s:,.0f} train "
            f"images/s, {self.world_size} process(es) on {self.device}",
        ]
        if self.skipped:
            lines.append(f"skipped    {len(self.skipped)} unreadable image(s)")
        for label, value in (("outputs", self.out_dir), ("best", self.best_dir),
                             ("hub", self.hub_url)):
            if value:
                lines.append(f"{label:<10} {value}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- distributed


class _Dist:
    """Rank, world size and device; a no-op shell in a single process."""

    def __init__(self, device: Any = None) -> None:
        import torch
        import torch.distributed as dist

        self.owns_group = False
        env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if device is not None:
            dev = torch.device(device)
        elif torch.cuda.is_available():
            dev = torch.device("cuda", self.local_rank if env_world > 1 else 0)
        else:
            dev = torch.device("cpu")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", self.local_rank if env_world > 1 else 0)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        self.device = dev
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        elif env_world > 1:
            if not dist.is_available():  # pragma: no cover
                raise InvalidArgumentError("WORLD_SIZE > 1 but torch.distributed is missing")
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            # Kept for later finetune() calls in this process (re-creating a default group
            # against torchrun's store can hang); destroyed when the interpreter exits.
            atexit.register(_destroy_group)
            self.owns_group = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world = 0, 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """The process group outlives one call (see ``__init__``)."""


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # Leave together: a rank tearing gloo down while its peer still talks to it can
        # abort the peer at exit (seen once under torchrun on a loaded machine).
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()


# --------------------------------------------------------------------------- helpers


class _Printer:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, message: str = "") -> None:
        if self.enabled:
            print(message, flush=True)


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_at(base: float, epoch: int, epochs: int) -> float:
    """Cosine schedule per epoch (``epoch`` from 1): full rate first, never zero."""
    return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_save_tensors(path: Path, tensors: dict[str, Any],
                         metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _cpu_state(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- features


class _HeadInputs:
    """Capture the input of the head module during a forward pass (a pre-hook)."""

    def __init__(self, head: nn.Module) -> None:
        self.items: list[Any] = []
        self.handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.items.append(args)

    def take(self) -> Any:
        import torch

        items, self.items = self.items, []
        if len(items) != 1 or len(items[0]) != 1 or not isinstance(items[0][0], torch.Tensor):
            return None
        return items[0][0].detach()

    def close(self) -> None:
        self.handle.remove()


def _loader(dataset: Any, indices: Sequence[int] | None, batch_size: int, num_workers: int,
            *, sampler: Any = None, generator: Any = None, pin: bool = False) -> Any:
    import torch
    from torch.utils.data import DataLoader

    from zoo_core._data import collate_skip

    kwargs: dict[str, Any] = {}
    if sampler is None:
        sampler = list(indices) if indices is not None else None
    if num_workers > 0:
        kwargs["persistent_workers"] = False
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, collate_fn=collate_skip,
                      generator=generator or torch.Generator().manual_seed(0),
                      pin_memory=pin, **kwargs)


def _extract(model: nn.Module, head_path: str, dataset: Any, indices: Sequence[int], *,
             batch_size: int, num_workers: int, device: torch.device, check: bool = True,
             desc: str = "features",
             progress: bool = False) -> tuple[Any, Any, list[Any], bool]:
    """Head inputs for ``indices`` in eval mode: ``(feats, valid_mask, bad_items, ok)``.

    ``feats`` has one row per entry of ``indices`` (zeros where the image was bad;
    ``None`` when no image was good). ``ok`` is False when caching is impossible: the
    head was not called exactly once with one tensor, or (with ``check``, on the first
    batch) the model's output is not the head applied to the captured input.
    """
    import torch
    from tqdm import tqdm

    head = model.get_submodule(head_path)
    was_training = model.training
    model.eval()
    hook = _HeadInputs(head)
    pos = {int(i): k for k, i in enumerate(indices)}
    feats = None
    valid = torch.zeros(len(indices), dtype=torch.bool)
    bad: list[Any] = []
    loader = _loader(dataset, indices, batch_size, num_workers, pin=device.type == "cuda")
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc=desc, leave=False, disable=not progress,
                              file=sys.stderr):
                bad.extend(batch.bad)
                if batch.x is None:
                    continue
                out = model(batch.x.to(device, non_blocking=True))
                f = hook.take()
                if f is None or f.shape[0] != batch.x.shape[0]:
                    return None, valid, bad, False
                if check:
                    check = False
                    again = head(f)
                    hook.take()  # the check's own head call
                    if not (isinstance(out, torch.Tensor) and out.shape == again.shape
                            and torch.allclose(out, again, rtol=1e-4, atol=1e-5)):
                        return None, valid, bad, False
                if feats is None:
                    feats = torch.zeros((len(indices), *f.shape[1:]), dtype=f.dtype,
                                        device=device)
                rows = torch.tensor([pos[int(i)] for i in batch.index], dtype=torch.long)
                feats[rows.to(device)] = f
                valid[rows] = True
    finally:
        hook.close()
        model.train(was_training)
    return feats, valid, bad, True


def _gather_rows(ctx: _Dist, feats: Any, valid: Any, local_idx: Sequence[int],
                 total: int) -> tuple[Any, Any]:
    """Assemble per-rank feature rows (for ``local_idx``) into ``total`` rows on every rank."""
    import torch
    import torch.distributed as dist

    shapes = ctx.gather_objects(
        None if feats is None else (tuple(feats.shape[1:]), str(feats.dtype)))
    shape = next(s for s in shapes if s is not None)
    sizes = ctx.gather_objects(len(local_idx))
    if feats is None:  # this rank had no readable image at all
        dtype = getattr(torch, shape[1].split(".")[-1])
        feats = torch.zeros((len(local_idx), *shape[0]), dtype=dtype, device=ctx.device)
    width = max(sizes)
    pad = width - feats.shape[0]
    f = torch.cat([feats, feats.new_zeros((pad, *feats.shape[1:]))]) if pad else feats
    v = torch.cat([valid, valid.new_zeros(pad)]) if pad else valid
    i = torch.tensor(list(local_idx) + [-1] * pad, dtype=torch.long)
    fs = [torch.empty_like(f) for _ in range(ctx.world)]
    vs = [torch.empty_like(v.to(torch.uint8).to(ctx.device)) for _ in range(ctx.world)]
    is_ = [torch.empty_like(i.to(ctx.device)) for _ in range(ctx.world)]
    dist.all_gather(fs, f.contiguous())
    dist.all_gather(vs, v.to(torch.uint8).to(ctx.device))
    dist.all_gather(is_, i.to(ctx.device))
    out = f.new_zeros((total, *f.shape[1:]))
    mask = torch.zeros(total, dtype=torch.bool)
    for fr, vr, ir in zip(fs, vs, is_, strict=True):
        keep = ir >= 0
        out[ir[keep]] = fr[keep]
        mask[ir[keep].cpu()] = vr[keep].cpu().bool()
    return out, mask


# --------------------------------------------------------------------------- similarity


def _loo_centroid_accuracy(x: Any, y: Any) -> float | None:
    """Leave-one-out nearest-centroid accuracy on standardised features ``x`` (N, D).

    The own-class centroid excludes the sample itself: its squared distance is
    ``(n_c / (n_c - 1))**2 * |x_i - mu_c|**2``. Samples of classes with one image are
    not scored. ``None`` when nothing can be scored.
    """
    import torch

    x = x.double().flatten(1)
    x = (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-6)
    classes = torch.unique(y)
    mu = torch.stack([x[y == c].mean(0) for c in classes])
    n = torch.stack([(y == c).sum() for c in classes]).double()
    d = torch.cdist(x, mu) ** 2
    own = torch.searchsorted(classes, y)
    n_own = n[own]
    scored = n_own > 1
    if not bool(scored.any()):
        return None
    rows = torch.arange(len(y))
    factor = torch.where(scored, n_own / (n_own - 1).clamp(min=1), torch.ones_like(n_own))
    d[rows, own] = d[rows, own] * factor**2
    pred = d.argmin(1)
    return float((pred[scored] == own[scored]).double().mean())


def _measure_indices(labels: Sequence[int], seed: int) -> list[int]:
    import numpy as np

    labels_arr = np.asarray(labels)
    classes = np.unique(labels_arr)
    per = max(2, min(MEASURE_PER_CLASS, MEASURE_MAX_IMAGES // max(1, len(classes))))
    rng = np.random.default_rng([seed, 7])
    chosen = []
    for c in classes:
        pos = np.flatnonzero(labels_arr == c)
        if len(pos) > per:
            pos = np.sort(rng.choice(pos, per, replace=False))
        chosen.extend(int(p) for p in pos)
    return sorted(chosen)


def measure_similarity(
    model_name: str,
    folder: FolderData,
    *,
    weights: Any = "default",
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    device: Any = "cpu",
    input_size: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Measure how well the pretrained features fit the target data (see module doc).

    Returns the figures: ``acc_pretrained``, ``acc_random``, ``chance``, ``similarity``
    (``None`` when no class has two images), ``images``, ``method``, ``formula``,
    ``seconds``.
    """
    import torch

    from zoo_core._builder import build_model
    from zoo_core._data import ImageDataset, make_transforms

    started = time.perf_counter()
    device = torch.device(device)
    classes = list(folder.classes)
    idx = _measure_indices([lab for _, lab in folder.train], seed)
    labels = torch.tensor([folder.train[i][1] for i in idx])
    accs: dict[str, Any] = {}
    runs = [("pretrained", "linear_probe", weights, seed)]
    runs += [(f"random{i}", "scratch", "default", seed + 1 + i) for i in range(RANDOM_INITS)]
    for kind, strategy, w, s in runs:
        _seed_all(s)
        m = build_model(model_name, len(classes), strategy, weights=w, label_names=classes,
                        device=device)
        _set_input_size(m, input_size)
        _, eval_tf = make_transforms(m)
        ds = ImageDataset(folder.train, eval_tf)
        feats, valid, _, ok = _extract(m, m.zoo.head, ds, idx, batch_size=batch_size,
                                       num_workers=num_workers, device=device, check=False)
        if not ok:
            raise StrategyError(
                f"cannot measure similarity for {model_name!r}: its head module "
                f"{m.zoo.head!r} does not take one tensor; pass strategy= explicitly")
        accs[kind] = None if feats is None else _loo_centroid_accuracy(
            feats[valid.to(feats.device)].cpu(), labels[valid])
        del m
    chance = 1.0 / len(classes)
    rand = [accs[f"random{i}"] for i in range(RANDOM_INITS)]
    acc_pre = accs["pretrained"]
    acc_rand = None if None in rand else sum(rand) / len(rand)
    if acc_pre is None or acc_rand is None:
        similarity = None
    elif 1.0 - acc_rand < 1e-9:
        similarity = 1.0 if acc_pre >= acc_rand else 0.0
    else:
        similarity = min(1.0, max(0.0, (acc_pre - acc_rand) / (1.0 - acc_rand)))
    return {
        "method": "leave-one-out nearest-centroid accuracy on standardised head-input "
                  f"features, pretrained vs randomly initialised backbone (mean of "
                  f"{RANDOM_INITS} initialisations)",
        "formula": "similarity = clip((acc_pretrained - acc_random) / (1 - acc_random), 0, 1)",
        "images": len(idx),
        "acc_pretrained": acc_pre,
        "acc_random": acc_rand,
        "acc_random_each": rand,
        "chance": chance,
        "similarity": similarity,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _has_pretrained(model_name: str, weights: Any) -> bool:
    from zoo_core._builder import _weights_spec
    from zoo_core._registry import HUB_PREFIX, get_registry
    from zoo_core._strategies import Strategy

    if weights is None:
        return False
    if isinstance(model_name, str) and model_name.startswith(HUB_PREFIX):
        return True
    spec = get_registry().resolve(model_name).spec
    try:
        return _weights_spec(spec, weights, Strategy("finetune")) is not None
    except StrategyError:
        return False


def _fmt_figures(fig: Mapping[str, Any]) -> str:
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [f"data        {fig['num_train']} training images, {fig['num_classes']} classes, "
             f"{fig['per_class']:.1f} per class (plenty from {fig['plenty_per_class']})"]
    if "acc_pretrained" in fig:
        lines.append(
            f"similarity  {f(fig['similarity'])} (high from {fig['high_similarity']}): "
            f"nearest-centroid accuracy {f(fig['acc_pretrained'])} on pretrained features vs "
            f"{f(fig['acc_random'])} on random features (chance {fig['chance']:.3f}), "
            f"leave-one-out on {fig['images']} training images, {fig['seconds']:.1f} s")
    elif fig.get("similarity") is not None:
        lines.append(f"similarity  {fig['similarity']:.3f} (given, not measured)")
    elif not fig.get("pretrained", True):
        lines.append("similarity  not measured: the model has no pretrained weights")
    return "\n".join(lines)


def _decide(model_name: str, folder: FolderData, *, weights: Any, seed: int,
            similarity_override: float | None, force: bool, device: Any, num_workers: int,
            say: _Printer, input_size: Any = None) -> tuple[str, str, bool, dict[str, Any]]:
    """``auto``: measure, decide, explain. Returns (strategy, reason, forced, figures)."""
    from zoo_core._registry import get_registry
    from zoo_core._strategies import decide_strategy

    thresholds = get_registry().catalog.auto
    n, c = len(folder.train), folder.num_classes
    figures: dict[str, Any] = {"num_train": n, "num_classes": c, "per_class": n / c,
                               "plenty_per_class": thresholds.plenty_per_class,
                               "high_similarity": thresholds.high_similarity}
    pretrained = _has_pretrained(model_name, weights)
    similarity = None
    if pretrained:
        if similarity_override is not None:
            similarity = float(similarity_override)
            figures["similarity"] = similarity
            figures["similarity_source"] = "given by the caller (similarity_override)"
        else:
            measured = measure_similarity(model_name, folder, weights=weights, seed=seed,
                                          device=device, num_workers=num_workers,
                                          input_size=input_size)
            figures.update(measured)
            similarity = measured["similarity"]
            figures["similarity_source"] = "measured"
    figures["pretrained"] = pretrained
    say(_fmt_figures(figures))
    try:
        kind, reason = decide_strategy(has_pretrained=pretrained, num_train_samples=n,
                                       num_classes=c, similarity=similarity,
                                       thresholds=thresholds)
    except TransferNotRecommendedError as exc:
        if not force:
            err = TransferNotRecommendedError(
                f"{exc}\nmeasured: {_fmt_figures(figures)}\nto fine-tune anyway pass "
                "force=True (CLI: --force), or choose --strategy explicitly")
            err.figures = figures  # type: ignore[attr-defined]
            raise err from None
        reason = (f"forced: {exc} -- fine-tuning everything anyway because force=True "
                  "was given")
        say("decision    finetune (forced; auto said: transfer learning not recommended)")
        return "finetune", reason, True, figures
    say(f"decision    {kind}: {reason}")
    return kind, reason, False, figures


# --------------------------------------------------------------------------- checkpoint


def _rng_state(device: torch.device) -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), npst[2], npst[3],
                         npst[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_checkpoint(ckpt_dir: Path, *, epoch: int, model: nn.Module, opt: Any,
                     rng_states: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Tensors to ``epoch-NNNN.safetensors``, the rest to ``state.json`` (commit point)."""
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {f"model/{k}": v for k, v in _cpu_state(model).items()}
    osd = opt.state_dict()
    opt_json: dict[str, Any] = {"param_groups": osd["param_groups"], "state": {}}
    for pid, pstate in osd["state"].items():
        opt_json["state"][str(pid)] = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value.detach().cpu().clone().contiguous()
                opt_json["state"][str(pid)][key] = "<tensor>"
            else:
                opt_json["state"][str(pid)][key] = value
    rng_json = []
    for r, st in enumerate(rng_states):
        tensors[f"rng/{r}/torch"] = st["torch"]
        if "cuda" in st:
            tensors[f"rng/{r}/cuda"] = st["cuda"]
        rng_json.append({"python": st["python"], "numpy": st["numpy"]})
    name = f"epoch-{epoch:04d}.safetensors"
    _atomic_save_tensors(ckpt_dir / name, tensors,
                         metadata={"epoch": str(epoch), "format": str(CHECKPOINT_FORMAT)})
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "tensors": name,
             "optimizer": opt_json, "rng": rng_json, **meta}
    _atomic_write_text(ckpt_dir / "state.json", json.dumps(state, indent=1) + "\n")
    for old in ckpt_dir.glob("epoch-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def _read_checkpoint(ckpt_dir: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    state_path = ckpt_dir / "state.json"
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        tensors_path = ckpt_dir / state["tensors"]
        tensors = {}
        with safe_open(str(tensors_path), framework="pt") as fh:
            meta = fh.metadata() or {}
            for key in fh.keys():  # noqa: SIM118  (safe_open has no __iter__)
                tensors[key] = fh.get_tensor(key)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidArgumentError(
            f"the checkpoint in {ckpt_dir} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it to start over") from exc
    if meta.get("epoch") != str(state["epoch"]) or state.get("format") != CHECKPOINT_FORMAT:
        raise InvalidArgumentError(f"the checkpoint in {ckpt_dir} is inconsistent "
                                   f"(state.json epoch {state.get('epoch')}, tensors "
                                   f"{meta.get('epoch')}); delete it to start over")
    state["_tensors"] = tensors
    return state


def _restore(state: Mapping[str, Any], model: nn.Module, opt: Any, ctx: _Dist) -> None:
    tensors = state["_tensors"]
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items()
                           if k.startswith("model/")})
    osd_json = state["optimizer"]
    opt_state: dict[int, dict[str, Any]] = {}
    for pid, entries in osd_json["state"].items():
        opt_state[int(pid)] = {
            key: (tensors[f"optim/{pid}/{key}"] if value == "<tensor>" else value)
            for key, value in entries.items()
        }
    opt.load_state_dict({"state": opt_state, "param_groups": osd_json["param_groups"]})
    rng = state["rng"]
    if len(rng) == ctx.world:
        mine = dict(rng[ctx.rank])
        mine["torch"] = tensors[f"rng/{ctx.rank}/torch"]
        if f"rng/{ctx.rank}/cuda" in tensors:
            mine["cuda"] = tensors[f"rng/{ctx.rank}/cuda"]
        _set_rng_state(mine, ctx.device)
    else:
        _seed_all(int(state["signature"]["seed"]) + 1000 * ctx.rank + int(state["epoch"]))


# --------------------------------------------------------------------------- outputs


CSV_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
              "images_per_s")


def _write_metrics(out: Path, history: Sequence[EpochMetrics], header: dict[str, Any]) -> None:
    rows = [m.as_dict() for m in history]
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"])) if rows else None
    doc = {**header, "epochs": rows, "best": best}
    _atomic_write_text(out / "metrics.json", json.dumps(doc, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _atomic_write_text(out / "metrics.csv", buf.getvalue())


def _plot(path: Path, history: Sequence[EpochMetrics], title: str) -> None:
    """Loss and accuracy curves (matplotlib's Agg canvas, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [m.epoch for m in history]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [m.train_loss for m in history], marker=".", label="train")
    ax1.plot(epochs, [m.val_loss for m in history], marker=".", label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.legend()
    ax2.plot(epochs, [m.train_acc for m in history], marker=".", label="train")
    ax2.plot(epochs, [m.val_acc for m in history], marker=".", label="val")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.02)
    ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def _save_best(model: nn.Module, best_dir: Path, metrics: dict[str, Any],
               training_data: dict[str, Any]) -> None:
    """save_pretrained into a fresh folder, then swap it in (never a half-written best/)."""
    from zoo_core._hub import save_pretrained

    tmp = best_dir.with_name(f".{best_dir.name}.tmp-{os.getpid()}")
    old = best_dir.with_name(f".{best_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp, metrics=metrics, training_data=training_data)
    if best_dir.exists():
        os.replace(best_dir, old)
    os.replace(tmp, best_dir)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- training


def _bn_average(model: nn.Module, ctx: _Dist) -> None:
    """Average trainable BatchNorm running statistics across ranks."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    if not ctx.active:
        return
    for m in model.modules():
        if isinstance(m, _BatchNorm) and not getattr(type(m), "_zoo_frozen", False) and \
                m.track_running_stats and m.running_mean is not None:
            for buf in (m.running_mean, m.running_var):
                t = buf.detach().clone()
                ctx.all_reduce_(t)
                with torch.no_grad():
                    buf.copy_(t / ctx.world)


def _sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace trainable BatchNorms by SyncBatchNorm (frozen ones stay as they are)."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm) and not getattr(type(child), "_zoo_frozen", False):
            sync = torch.nn.SyncBatchNorm(child.num_features, child.eps, child.momentum,
                                          child.affine, child.track_running_stats)
            sync.load_state_dict(child.state_dict())
            for p_new, p_old in zip(sync.parameters(), child.parameters(), strict=True):
                p_new.requires_grad_(p_old.requires_grad)
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            _sync_batchnorm(child)
    return module


class _Trainer:
    """One run's training state: the model (maybe wrapped), optimizer, data, features."""

    def __init__(self, *, model: nn.Module, kind: str, ctx: _Dist, train_ds: Any, val_ds: Any,
                 batch_size: int, num_workers: int, seed: int, cached: bool,
                 progress: bool) -> None:
        self.model = model
        self.kind = kind
        self.ctx = ctx
        self.train_ds = train_ds
        self.val_ds = val_ds
        self.local_bs = batch_size // ctx.world
        self.num_workers = num_workers
        self.seed = seed
        self.cached = cached
        self.progress = progress and ctx.main
        self.head_path = model.zoo.head
        self.head = model.get_submodule(self.head_path)
        self.bad: dict[str, str] = {}
        self.feature_seconds = 0.0
        self.train_feats = self.val_feats = None
        self.train_valid = self.val_valid = None
        self.train_labels = self._labels(train_ds)
        self.val_labels = self._labels(val_ds)
        self.val_local = list(range(ctx.rank, len(val_ds), ctx.world))
        self.net: Any = None

    def _labels(self, ds: Any) -> Any:
        import torch

        return torch.tensor(ds.labels, dtype=torch.long, device=self.ctx.device)

    def _note_bad(self, items: Sequence[Any]) -> None:
        for it in items:
            self.bad.setdefault(it.path, it.reason)

    def prepare_cache(self, say: _Printer) -> bool:
        """Extract head inputs once (sharded across ranks). False if not cacheable."""
        ctx = self.ctx
        started = time.perf_counter()
        results = []
        for name, ds in (("train", self.train_ds), ("val", self.val_ds)):
            local = list(range(ctx.rank, len(ds), ctx.world))
            feats, valid, bad, ok = _extract(
                self.model, self.head_path, ds, local, batch_size=max(self.local_bs, 64),
                num_workers=self.num_workers, device=ctx.device, check=True,
                desc=f"features ({name}, once)", progress=self.progress)
            self._note_bad(bad)
            flags = ctx.gather_objects((ok, feats is not None))
            if not all(f[0] for f in flags):
                return False
            if not any(f[1] for f in flags):
                raise InvalidArgumentError(f"no {name} image could be decoded: "
                                           f"{len(self.bad)} unreadable image(s)")
            if ctx.active:
                feats, valid = _gather_rows(ctx, feats, valid, local, len(ds))
            results.append((feats, valid))
        (self.train_feats, self.train_valid), (self.val_feats, self.val_valid) = results
        self.feature_seconds = time.perf_counter() - started
        say(f"features    cached {len(self.train_ds)} + {len(self.val_ds)} head inputs of "
            f"shape {tuple(self.train_feats.shape[1:])} in {self.feature_seconds:.2f} s; "
            "the frozen backbone will not run again")
        return True

    def wrap(self, sync_bn: bool) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        target = self.head if self.cached else self.model
        if sync_bn and self.ctx.active:
            if self.ctx.device.type != "cuda":
                raise InvalidArgumentError("sync_bn=True needs GPUs (SyncBatchNorm does not "
                                           "run on CPU); drop it")
            _sync_batchnorm(self.model)
        if self.ctx.active:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            # buffers: no per-forward broadcast (trainable BN statistics are averaged per
            # epoch by _bn_average); newer torch names the switch forward_sync_buffers
            import inspect

            sync_kw = ("forward_sync_buffers" if "forward_sync_buffers" in
                       inspect.signature(DDP.__init__).parameters else "broadcast_buffers")
            self.net = DDP(target, device_ids=ids, **{sync_kw: False})
        else:
            self.net = target

    def _set_train_mode(self) -> None:
        if self.kind == "linear_probe":
            self.model.eval()
            self.head.train()
        else:
            self.model.train()

    def _sampler(self, n: int, epoch: int) -> Any:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), num_replicas=self.ctx.world, rank=self.ctx.rank,
                                     shuffle=True, seed=self.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return sampler

    def _step(self, opt: Any, logits: Any, y: Any) -> tuple[float, int]:
        import torch.nn.functional as F

        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()) * int(y.shape[0]), int((logits.argmax(1) == y).sum())

    def _empty_step(self, opt: Any) -> None:
        """A batch whose images all failed to decode. In a distributed run every rank
        must join every gradient all-reduce and apply the same update: contribute a zero
        gradient and step with the others."""
        if not self.ctx.active:
            return
        loss = sum(p.sum() for p in self.net.parameters() if p.requires_grad) * 0.0
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()

    def train_epoch(self, opt: Any, epoch: int, epochs: int) -> tuple[float, float, int]:
        import torch
        from tqdm import tqdm

        ctx = self.ctx
        self._set_train_mode()
        loss_sum, correct, seen = 0.0, 0, 0
        desc = f"epoch {epoch}/{epochs}"
        if self.cached:
            order = list(self._sampler(len(self.train_ds), epoch))
            chunks = [order[i:i + self.local_bs] for i in range(0, len(order), self.local_bs)]
            for chunk in tqdm(chunks, desc=desc, leave=False, disable=not self.progress,
                              file=sys.stderr):
                idx = torch.tensor(chunk, dtype=torch.long)
                idx = idx[self.train_valid[idx]]
                if len(idx) == 0:
                    self._empty_step(opt)
                    continue
                dev_idx = idx.to(ctx.device)
                logits = self.net(self.train_feats[dev_idx])
                ls, c = self._step(opt, logits, self.train_labels[dev_idx])
                loss_sum, correct, seen = loss_sum + ls, correct + c, seen + len(idx)
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 101 + ctx.rank)
            loader = _loader(self.train_ds, None, self.local_bs, self.num_workers,
                             sampler=self._sampler(len(self.train_ds), epoch), generator=gen,
                             pin=ctx.device.type == "cuda")
            for batch in tqdm(loader, desc=desc, leave=False, disable=not self.progress,
                              file=sys.stderr):
                self._note_bad(batch.bad)
                if batch.x is None:
                    self._empty_step(opt)
                    continue
                x = batch.x.to(ctx.device, non_blocking=True)
                y = batch.y.to(ctx.device, non_blocking=True)
                ls, c = self._step(opt, self.net(x), y)
                loss_sum, correct, seen = loss_sum + ls, correct + c, seen + len(y)
        _bn_average(self.model, ctx)
        return self._reduce(loss_sum, correct, seen)

    def evaluate(self) -> tuple[float, float, int]:
        import torch
        import torch.nn.functional as F

        ctx = self.ctx
        loss_sum, correct, seen = 0.0, 0, 0
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            if self.cached:
                idx = torch.tensor(self.val_local, dtype=torch.long)
                idx = idx[self.val_valid[idx]] if len(idx) else idx
                for i in range(0, len(idx), 1024):
                    part = idx[i:i + 1024].to(ctx.device)
                    logits = self.head(self.val_feats[part])
                    y = self.val_labels[part]
                    loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(part)
            else:
                loader = _loader(self.val_ds, self.val_local, max(self.local_bs, 64),
                                 self.num_workers, pin=ctx.device.type == "cuda")
                for batch in loader:
                    self._note_bad(batch.bad)
                    if batch.x is None:
                        continue
                    logits = self.model(batch.x.to(ctx.device, non_blocking=True))
                    y = batch.y.to(ctx.device)
                    loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
        self.model.train(was)
        return self._reduce(loss_sum, correct, seen)

    def _reduce(self, loss_sum: float, correct: int, seen: int) -> tuple[float, float, int]:
        import torch

        t = torch.tensor([loss_sum, float(correct), float(seen)], dtype=torch.float64,
                         device=self.ctx.device)
        self.ctx.all_reduce_(t)
        loss_sum, correct, seen = float(t[0]), float(t[1]), int(t[2])
        return (loss_sum / seen if seen else float("nan"),
                correct / seen if seen else 0.0, seen)


# --------------------------------------------------------------------------- finetune


def _set_input_size(model: nn.Module, size: tuple[int, int, int] | None) -> None:
    if size is not None:
        model.zoo = model.zoo.replace(  # type: ignore[union-attr]
            data_config=dataclasses.replace(model.zoo.data_config, input_size=size))


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
    similarity_override: float | None = None,
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
    ``similarity_override`` skips the similarity measurement; ``force`` fine-tunes when
    ``auto`` finds the data scarce and dissimilar instead of raising
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
            verbose=verbose, similarity_override=similarity_override, force=force,
            sync_bn=sync_bn, input_size=input_size)
    finally:
        ctx.close()


def _finetune(ctx: _Dist, wall_start: float, model_name: str, data: Any, *, strategy: str,
              epochs: int, batch_size: int, lr: float | None, weight_decay: float,
              out: Any, seed: int, val_fraction: float, per_class: int | None, weights: Any,
              cache_features: bool, augment: Any, push_to_hub: str | None, resume: bool,
              overwrite: bool, num_workers: int, progress: bool, verbose: bool,
              similarity_override: float | None, force: bool, sync_bn: bool,
              input_size: Any = None) -> tuple[nn.Module, FinetuneResult]:
    import torch

    from zoo_core._builder import build_model
    from zoo_core._data import (
        BadImageWarning,
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
    if similarity_override is not None and not 0.0 <= float(similarity_override) <= 1.0:
        raise InvalidArgumentError(
            f"similarity_override must be within [0, 1], got {similarity_override!r}")

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
    if ctx.main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and ckpt_dir is not None and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
    ctx.barrier()

    # 2. data
    if data is None:
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
    with warnings.catch_warnings():
        if not ctx.main:
            warnings.simplefilter("ignore")
        folder = scan_image_folder(root, val_fraction=val_fraction, seed=seed, warn=ctx.main)
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
                decision = _decide(model_name, folder, weights=weights, seed=seed,
                                   similarity_override=similarity_override, force=force,
                                   device=ctx.device, num_workers=num_workers, say=say,
                                   input_size=size)
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


def _push(model: nn.Module, repo_id: str, out_dir: Path | None,
          history: Sequence[EpochMetrics], training_data: dict[str, Any],
          say: _Printer) -> str | None:
    """Push the best epoch's weights (from ``out/best`` when there is one)."""
    import copy

    from zoo_core._hub import push_to_hub

    best = max(history, key=lambda m: (m.val_acc, -m.epoch))
    to_push = model
    best_file = out_dir / "best" / "model.safetensors" if out_dir is not None else None
    if best_file is not None and best_file.is_file():
        from safetensors.torch import load_file

        to_push = copy.deepcopy(model)
        to_push.load_state_dict(load_file(str(best_file)))
    url = push_to_hub(to_push, repo_id,
                      metrics={"val_accuracy": best.val_acc, "val_loss": best.val_loss,
                               "epoch": best.epoch, "epochs": len(history)},
                      training_data=training_data)
    say(f"pushed      {repo_id}: {url}")
    return str(url) if url is not None else None


# --------------------------------------------------------------------------- default run


COMPARE_STRATEGIES = ("linear_probe", "partial:1", "finetune", "scratch", "auto")


def run_default(model: str = "zoonet_s", *, per_class: int | None = None,
                epochs: int = DEFAULT_EPOCHS, seed: int = 0,
                strategies: Sequence[str] = COMPARE_STRATEGIES, verbose: bool = True,
                progress: bool = False, threads: int | None = 1) -> list[dict[str, Any]]:
    """The embedded default: fine-tune ``model`` on the few-shot digits 5-9 target task
    with each strategy and print a table (strategy, val accuracy, time).

    Does the transfer-learning table hold on real data? ``auto`` measures the similarity
    and decides; the other rows show what each choice gets. ``threads``: torch threads
    during the run (restored after); one is fastest for 32x32 images on a tiny CNN and
    keeps a busy machine from slowing OpenMP down tenfold (``None``: leave as is).
    """
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        rows = _compare(model, per_class, epochs, seed, strategies, progress)
    finally:
        torch.set_num_threads(before)
    say = _Printer(verbose)
    n = per_class or 10
    say(f"{model} on the embedded target task: digits 5-9 (never seen in pretraining on "
        f"digits 0-4), {n} training images per class, {epochs} epochs, seed {seed}")
    say(f"{'strategy':<14} {'ran as':<14} {'val acc':>8} {'best':>6} {'time':>7}  note")
    for r in rows:
        acc = "-" if r["val_acc"] is None else f"{r['val_acc']:.3f}"
        best = "-" if r["best_val_acc"] is None else f"{r['best_val_acc']:.3f}"
        say(f"{r['strategy']:<14} {r['decided']:<14} {acc:>8} {best:>6} "
            f"{r['seconds']:>6.1f}s  {r['note']}")
    return rows


def _compare(model: str, per_class: int | None, epochs: int, seed: int,
             strategies: Sequence[str], progress: bool) -> list[dict[str, Any]]:
    rows = []
    for s in strategies:
        started = time.perf_counter()
        try:
            _, res = finetune(model, None, strategy=s, epochs=epochs, per_class=per_class,
                              seed=seed, progress=progress, verbose=False)
        except TransferNotRecommendedError as exc:
            rows.append({"strategy": s, "decided": "refused", "val_acc": None,
                         "best_val_acc": None, "seconds": time.perf_counter() - started,
                         "note": "transfer not recommended: "
                                 + _auto_note(getattr(exc, "figures", {}))})
            continue
        note = ""
        if s == "auto":
            note = _auto_note(res.figures) or res.reason
        elif res.feature_cache:
            note = "cached features"
        rows.append({"strategy": s, "decided": res.strategy, "val_acc": res.final_val_acc,
                     "best_val_acc": res.best_val_acc, "seconds": res.wall_seconds,
                     "note": note})
    return rows


def _auto_note(f: Mapping[str, Any]) -> str:
    if f.get("acc_pretrained") is None or f.get("acc_random") is None:
        return ""
    size = "plenty" if f["per_class"] >= f["plenty_per_class"] else "scarce"
    return (f"similarity {f['similarity']:.2f} (NC acc {f['acc_pretrained']:.2f} pretrained "
            f"vs {f['acc_random']:.2f} random features), {f['per_class']:.0f}/class {size}")


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo finetune`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on an image folder (default: embedded digits)",
        description="Fine-tune MODEL on an ImageFolder tree. Without --data: the embedded "
                    "digits 5-9 task. --compare runs every strategy and prints a table.")
    p.add_argument("model", nargs="?", default="zoonet_s", help="model name (default zoonet_s)")
    p.add_argument("--data", default=None,
                   help="ImageFolder DIR (DIR/<class>/* or DIR/train|val/<class>/*); "
                        "default: the embedded digits 5-9")
    p.add_argument("--strategy", "-s", default="auto",
                   help="auto (measured), linear_probe, finetune, partial:K or scratch")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
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
                   help="fine-tune even when auto finds the data scarce and dissimilar")
    p.add_argument("--similarity", type=float, default=None,
                   help="skip the similarity measurement and use this value in [0, 1]")
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
        run_default(args.model, per_class=args.per_class, epochs=args.epochs, seed=args.seed,
                    progress=not args.no_progress)
        return 0
    out = args.out or os.path.join("runs", f"{args.model.replace('/', '_').replace(':', '_')}-"
                                   f"{time.strftime('%Y%m%d-%H%M%S')}")
    _, result = finetune(
        args.model, args.data, strategy=args.strategy, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, out=out,
        seed=args.seed, val_fraction=args.val_fraction, per_class=args.per_class,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        cache_features=not args.no_cache, augment=args.augment,
        push_to_hub=args.push_to_hub, resume=args.resume, overwrite=args.overwrite,
        num_workers=args.num_workers, device=args.device, progress=not args.no_progress,
        similarity_override=args.similarity, force=args.force, input_size=args.input_size)
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print()
        print(result.summary())
    return 0
