"""The training loop: one epoch of steps (cached features or full forward), evaluation."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo_core._finetune.features import _extract, _gather_rows, _loader
from zoo_core._finetune.utils import _Printer
from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo_core._finetune.dist import _Dist


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
