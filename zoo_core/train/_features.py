"""Head inputs of a frozen backbone: captured once per image, sharded across ranks."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo_core.train._heartbeat import Heartbeat

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo_core.train._dist import _Dist


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
            *, sampler: Any = None, generator: Any = None, pin: bool = False,
            persistent: bool = False) -> Any:
    import torch
    from torch.utils.data import DataLoader

    from zoo_core.data._data import collate_skip

    kwargs: dict[str, Any] = {}
    if sampler is None:
        sampler = list(indices) if indices is not None else None
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent
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
            tty = sys.stderr.isatty()
            beat = Heartbeat(desc, len(loader), progress and not tty)
            for batch in tqdm(loader, desc=desc, leave=False, disable=not (progress and tty),
                              file=sys.stderr):
                beat.tick()
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


def _extract_reusing(model: nn.Module, head_path: str, dataset: Any, indices: Sequence[int],
                     known: dict[str, Any], **kwargs: Any) -> tuple[Any, Any, list[Any], bool, int]:
    """:func:`_extract`, taking the rows of images in ``known`` (absolute path -> feature
    row, from ``zoo rank``'s cache of this model, weights and preprocessing) instead of
    running the backbone on them. At least one image always runs, so that the check that
    the output is the head applied to its input still happens. Returns ``_extract``'s
    tuple plus the number of rows reused."""
    import os

    import numpy as np
    import torch

    paths = [os.path.abspath(dataset.samples[i][0]) for i in indices]
    have = [k for k, p in enumerate(paths) if p in known]
    if not have:
        return (*_extract(model, head_path, dataset, indices, **kwargs), 0)
    if len(have) == len(indices):
        have = have[1:]  # the first image runs: it carries the cacheability check
    if not have:
        return (*_extract(model, head_path, dataset, indices, **kwargs), 0)
    have_set = set(have)
    todo = [k for k in range(len(indices)) if k not in have_set]
    feats, valid, bad, ok = _extract(model, head_path, dataset, [indices[k] for k in todo],
                                     **kwargs)
    if not ok:
        return None, torch.zeros(len(indices), dtype=torch.bool), bad, False, 0
    cached = torch.as_tensor(np.stack([known[paths[k]] for k in have]))
    width = cached.shape[1:] if feats is None else feats.shape[1:]
    if feats is not None and tuple(cached.shape[1:]) != tuple(width):
        return (*_extract(model, head_path, dataset, indices, **kwargs), 0)  # stale entry
    dtype = cached.dtype if feats is None else feats.dtype
    device = kwargs["device"]
    out = torch.zeros((len(indices), *width), dtype=dtype, device=device)
    mask = torch.zeros(len(indices), dtype=torch.bool)
    rows_have = torch.tensor(have, dtype=torch.long)
    out[rows_have.to(device)] = cached.to(device=device, dtype=dtype)
    mask[rows_have] = True
    if feats is not None:
        rows_todo = torch.tensor(todo, dtype=torch.long)
        out[rows_todo.to(device)] = feats
        mask[rows_todo] = valid
    return out, mask, bad, True, len(have)
