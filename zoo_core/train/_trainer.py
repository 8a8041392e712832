"""The training loop: one epoch of steps (cached features or full forward), evaluation."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError
from zoo_core.train._features import _extract_reusing, _gather_rows, _loader
from zoo_core.train._heartbeat import Heartbeat
from zoo_core.train._utils import _Printer

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo_core.train._dist import _Dist


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


class _EpochSampler:
    """The trainer's sampler for the epoch it is set to (a persistent loader's sampler)."""

    def __init__(self, trainer: _Trainer, n: int) -> None:
        self.trainer, self.n, self.epoch = trainer, n, 1

    def __iter__(self) -> Any:
        return iter(self.trainer._sampler(self.n, self.epoch))

    def __len__(self) -> int:
        return len(self.trainer._sampler(self.n, self.epoch))


class _Trainer:
    """One run's training state: the model (maybe wrapped), optimizer, data, features."""

    def __init__(self, *, model: nn.Module, kind: str, ctx: _Dist, train_ds: Any, val_ds: Any,
                 batch_size: int, num_workers: int, seed: int, cached: bool,
                 progress: bool, loss_fn: Any = None, mixup: Any = None,
                 label: str | None = None, balance: str | None = None) -> None:
        import torch

        self.model = model
        self.kind = kind
        self.label = label or kind  # the strategy as the user named it (``partial:1``)
        self.ctx = ctx
        self.train_ds = train_ds
        self.val_ds = val_ds
        self.local_bs = batch_size // ctx.world
        self.num_workers = num_workers
        self.seed = seed
        self.cached = cached
        # live bars on a terminal only: plain epoch lines (printed by the pipeline) in CI
        self.progress = progress and ctx.main and sys.stderr.isatty()
        self.plain = progress and ctx.main and not sys.stderr.isatty()  # heartbeat lines
        self.loss_fn = loss_fn if loss_fn is not None else torch.nn.CrossEntropyLoss()
        self.mixup = mixup
        self.balance = balance  # "sampler": balanced draws each epoch; any: weighted probe
        self.class_weights: list[float] | None = None
        self.updates = 0  # optimizer steps so far (EMA warmup counts them)
        self.solver: str | None = None  # "lbfgs": the head is solved, not trained (.probe)
        self.solver_info: dict[str, Any] = {}
        self.window_data = False
        self.head_path = model.zoo.head
        self.head = model.get_submodule(self.head_path)
        self.bad: dict[str, str] = {}
        self.feature_seconds = 0.0
        self.reused_rows = 0  # feature rows taken from zoo rank's cache
        self.train_feats = self.val_feats = None
        self.train_valid = self.val_valid = None
        self.train_labels = self._labels(train_ds)
        self.val_labels = self._labels(val_ds)
        self.val_local = list(range(ctx.rank, len(val_ds), ctx.world))
        self.net: Any = None
        self.memory_format = torch.preserve_format  # channels_last under --channels-last
        self._loader: Any = None  # with workers: the training loader, built once
        self.run_bar: Any = None  # the run's progress bar (terminals), one step per batch
        self._epoch_sampler: Any = None

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
        known = self._rank_rows() if not ctx.active else {}
        reused = 0
        for name, ds in (("train", self.train_ds), ("val", self.val_ds)):
            local = list(range(ctx.rank, len(ds), ctx.world))
            feats, valid, bad, ok, n = _extract_reusing(
                self.model, self.head_path, ds, local, known, batch_size=max(self.local_bs, 64),
                num_workers=self.num_workers, device=ctx.device, check=True,
                desc=f"features ({name}, once)", progress=self.progress or self.plain)
            reused += n
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
            f"shape {tuple(self.train_feats.shape[1:])} in {self.feature_seconds:.2f} s"
            + (f" ({reused} taken from zoo rank's feature cache)" if reused else "")
            + "; the frozen backbone will not run again")
        self.reused_rows = reused
        return True

    def _rank_rows(self) -> dict[str, Any]:
        """Feature rows ``zoo rank`` cached for this model, weights and preprocessing."""
        zoo = getattr(self.model, "zoo", None)
        sha = getattr(zoo, "weights_sha256", None)
        if not sha or not getattr(zoo, "plugin", None):
            return {}
        from zoo_core.train import _feature_cache as fc

        try:
            return fc.load_rows(f"{zoo.plugin}/{zoo.name}", sha, fc.preprocessing(self.model))
        except Exception:  # a damaged cache never stops a run: extract instead
            return {}

    def wrap(self, opt: Any, sync_bn: bool, speed: Any = None) -> Any:
        """Hand the trained module and its optimizer to accelerate (DDP under a launcher,
        autocast under --precision); returns the accelerated optimizer. ``speed``
        (:class:`._speed.Speed`): channels_last images and model, ``torch.compile``."""
        import torch

        target = self.head if self.cached else self.model
        if sync_bn and self.ctx.active:
            if self.ctx.device.type != "cuda":
                raise InvalidArgumentError("sync_bn=True needs GPUs (SyncBatchNorm does not "
                                           "run on CPU); drop it")
            _sync_batchnorm(self.model)
        if speed is not None and speed.channels_last and not self.cached:
            self.model.to(memory_format=torch.channels_last)
            self.memory_format = torch.channels_last
        self.net, opt = self.ctx.acc.prepare(target, opt)
        if speed is not None and speed.compile is not None:
            self.net = torch.compile(self.net, backend=speed.compile)
        return opt

    def unwrap(self) -> None:
        """Undo accelerate's wrappers (DDP, the autocast forward) on the returned model."""
        if self.net is not None:
            self.ctx.acc.unwrap_model(self.net, keep_fp32_wrapper=False,
                                      keep_torch_compile=False)
        self._loader = self._epoch_sampler = None  # persistent workers end with the run
        import torch

        if self.memory_format == torch.channels_last:  # the returned model: plain NCHW
            self.model.to(memory_format=torch.contiguous_format)
            self.memory_format = torch.preserve_format

    def _set_train_mode(self) -> None:
        if self.kind == "linear_probe":
            self.model.eval()
            self.head.train()
            return
        self.model.train()
        if self.kind == "lp_ft":
            # The head was solved on features computed with BatchNorm's running statistics.
            # Batch statistics of a small batch from a new domain give other features, the
            # solved head's large weights turn them into huge logits, and the first steps
            # wreck the backbone (bench_lp_ft --suite: noise-bands at 10/class fell from
            # 0.99 to 0.33). So BatchNorm keeps normalising with its running statistics;
            # its affine weights still train.
            from torch.nn.modules.batchnorm import _BatchNorm

            for m in self.model.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()

    def steps_per_epoch(self) -> int:
        """Batches per epoch on this rank (1 when the head is solved)."""
        if self.solver:
            return 1
        n = len(self._sampler(len(self.train_ds), 1))
        return max(1, -(-n // self.local_bs))

    def _sampler(self, n: int, epoch: int) -> Any:
        from torch.utils.data import DistributedSampler

        if self.balance == "sampler":
            from zoo_core.train._balance import balanced_order

            return balanced_order(self.train_ds.labels, seed=self.seed, epoch=epoch,
                                  world=self.ctx.world, rank=self.ctx.rank)

        sampler = DistributedSampler(range(n), num_replicas=self.ctx.world, rank=self.ctx.rank,
                                     shuffle=True, seed=self.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return sampler

    def _micro_step(self, opt: Any, x: Any, y: Any, *, last: bool, window_images: int,
                    ema: Any) -> tuple[float, int, int]:
        """One micro-batch: forward, scaled backward (gradient sync only on the window's
        last micro-batch), and at the window's end the optimizer step and EMA update.
        Each micro-batch's mean loss is weighted by its share of the window's images, so
        ``accumulate`` micro-batches equal one batch of all of them.
        ``x is None``: an empty batch (every image failed to decode); under DDP it still
        joins the gradient all-reduce with a zero gradient."""
        import contextlib

        acc = self.ctx.acc
        sync = contextlib.nullcontext() if last else acc.no_sync(self.net)
        loss_sum, correct, n = 0.0, 0, 0
        with sync:
            if x is None:
                if self.ctx.active:
                    zero = sum(p.sum() for p in self.net.parameters() if p.requires_grad)
                    acc.backward(zero * 0.0)  # type: ignore[union-attr]
            else:
                target = y
                if self.mixup is not None and len(y) % 2 == 0:
                    x, target = self.mixup(x, y)
                elif self.mixup is not None:  # timm's Mixup pairs images: an odd batch
                    target = self._soft(y)
                logits = self.net(x)
                loss = self.loss_fn(logits, target)
                acc.backward(loss * (len(y) / max(window_images, 1)))
                n = int(y.shape[0])
                loss_sum = float(loss.detach()) * n
                correct = int((logits.detach().argmax(1) == y).sum())
        if last:
            self.window_data = self.window_data or n > 0
            if self.window_data or self.ctx.active:
                opt.step()
                self.updates += 1
                if ema is not None:
                    ema.update(self.model, step=self.updates)
            opt.zero_grad(set_to_none=True)
            self.window_data = False
        else:
            self.window_data = self.window_data or n > 0
        return loss_sum, correct, n

    def _soft(self, y: Any) -> Any:
        from timm.data.mixup import one_hot

        off = self.mixup.label_smoothing / self.mixup.num_classes
        return one_hot(y, self.mixup.num_classes, on_value=1.0 - self.mixup.label_smoothing
                       + off, off_value=off)

    def train_epoch(self, opt: Any, epoch: int, epochs: int, *, accumulate: int = 1,
                    ema: Any = None) -> tuple[float, float, int]:
        import torch
        from tqdm import tqdm

        ctx = self.ctx
        self._set_train_mode()
        loss_sum, correct, seen = 0.0, 0, 0
        self.window_data = False
        if self.cached:
            order = list(self._sampler(len(self.train_ds), epoch))
            batches: Any = [order[i:i + self.local_bs]
                            for i in range(0, len(order), self.local_bs)]
        elif self.num_workers > 0:  # one loader for the run: its workers persist
            if self._loader is None:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + ctx.rank)
                self._epoch_sampler = _EpochSampler(self, len(self.train_ds))
                self._loader = _loader(self.train_ds, None, self.local_bs, self.num_workers,
                                       sampler=self._epoch_sampler, generator=gen,
                                       pin=ctx.device.type == "cuda", persistent=True)
            self._epoch_sampler.epoch = epoch
            batches = self._loader
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 101 + ctx.rank)
            batches = _loader(self.train_ds, None, self.local_bs, self.num_workers,
                              sampler=self._sampler(len(self.train_ds), epoch), generator=gen,
                              pin=ctx.device.type == "cuda")
        total = len(batches)
        n_order = len(self._sampler(len(self.train_ds), epoch))
        sizes = [min(self.local_bs, n_order - i) for i in range(0, n_order, self.local_bs)]
        bar = tqdm(batches, desc=f"{self.label} epoch {epoch}/{epochs}", leave=False,
                   file=sys.stderr, disable=not self.progress, dynamic_ncols=True)
        beat = Heartbeat(f"{self.label} epoch {epoch}/{epochs}", total, self.plain)
        for i, item in enumerate(bar):
            beat.tick()
            window_start = i - i % accumulate
            window = min(accumulate, total - window_start)
            last = i == window_start + window - 1
            x = y = None
            if self.cached:
                idx = torch.tensor(item, dtype=torch.long)
                idx = idx[self.train_valid[idx]]
                if len(idx):
                    dev_idx = idx.to(ctx.device)
                    x, y = self.train_feats[dev_idx], self.train_labels[dev_idx]
            else:
                self._note_bad(item.bad)
                if item.x is not None:
                    x = item.x.to(ctx.device, non_blocking=True,
                                  memory_format=self.memory_format)
                    y = item.y.to(ctx.device, non_blocking=True)
            ls, c, n = self._micro_step(opt, x, y, last=last, ema=ema,
                                        window_images=sum(
                                            sizes[window_start:window_start + window]))
            loss_sum, correct, seen = loss_sum + ls, correct + c, seen + n
            if self.run_bar is not None:
                self.run_bar.update(1)
            if seen and self.progress and (last or i == total - 1):
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                refresh=False)
        bar.close()
        _bn_average(self.model, ctx)
        return self._reduce(loss_sum, correct, seen)

    def solve(self) -> tuple[float, float, int]:
        """The head as a cross-validated logistic regression on the cached training
        features (:mod:`._probe`): fitted on rank 0, copied to the others. Returns the
        training loss, accuracy and image count of the solved head."""
        import torch
        import torch.nn.functional as F

        from zoo_core.train._probe import solve_head

        ctx = self.ctx
        rows = self.train_valid.nonzero().flatten().to(ctx.device)
        x, y = self.train_feats[rows], self.train_labels[rows]
        sw = None
        if self.balance is not None and self.class_weights is not None:
            sw = torch.tensor(self.class_weights, dtype=torch.float64)[y.cpu()]
        info = solve_head(self.head, x, y, seed=self.seed, sample_weight=sw) \
            if ctx.main else None
        if ctx.active:
            state = ctx.broadcast({k: v.cpu() for k, v in self.head.state_dict().items()}
                                  if ctx.main else None)
            self.head.load_state_dict(state)
            info = ctx.broadcast(info)
        self.solver_info = dict(info or {})
        with torch.no_grad():
            logits = self.head(x)
            loss = float(F.cross_entropy(logits, y))
            acc = float((logits.argmax(1) == y).double().mean()) if len(y) else 0.0
        return loss, acc, len(y)

    def evaluate(self, model: Any = None) -> tuple[float, float, int]:
        """Validation loss, accuracy and image count, every image exactly once across
        ranks (``val_local`` is a strided shard). ``model``: evaluate these weights (the
        EMA copy) instead of the trained ones."""
        import torch
        import torch.nn.functional as F

        ctx = self.ctx
        model = self.model if model is None else model
        head = model.get_submodule(self.head_path)
        loss_sum, correct, seen = 0.0, 0, 0
        was = model.training
        model.eval()
        with torch.no_grad(), ctx.acc.autocast():
            if self.cached:
                idx = torch.tensor(self.val_local, dtype=torch.long)
                idx = idx[self.val_valid[idx]] if len(idx) else idx
                for i in range(0, len(idx), 1024):
                    part = idx[i:i + 1024].to(ctx.device)
                    logits = head(self.val_feats[part]).float()
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
                    logits = model(batch.x.to(ctx.device, non_blocking=True,
                                              memory_format=self.memory_format)).float()
                    y = batch.y.to(ctx.device)
                    loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
        model.train(was)
        return self._reduce(loss_sum, correct, seen)

    def _reduce(self, loss_sum: float, correct: int, seen: int) -> tuple[float, float, int]:
        import torch

        t = torch.tensor([loss_sum, float(correct), float(seen)], dtype=torch.float64,
                         device=self.ctx.device)
        self.ctx.all_reduce_(t)
        loss_sum, correct, seen = float(t[0]), float(t[1]), int(t[2])
        return (loss_sum / seen if seen else float("nan"),
                correct / seen if seen else 0.0, seen)
