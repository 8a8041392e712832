"""The learning-rate range test (Smith 2017, "Cyclical learning rates"; fastai's
``lr_find``): ``zoo lr-find`` and ``zoo finetune --lr auto``.

The run's own optimizer (its param groups: layer decay's ``lr_scale``, frozen parts left
out) takes ``num_iter`` steps while the learning rate grows exponentially from
``start_lr`` to ``end_lr``; the loss is smoothed (exponential moving average with bias
correction, beta 0.98) and the test stops once it exceeds 4x its best value (divergence)
or turns NaN. The suggestion is fastai's default, the middle of the longest valley of the
smoothed curve ("valley"); the steepest descent ("steep") and the minimum / 10 are
recorded too. The model, optimizer (and fp16 gradient scaler) and the RNG states are
restored afterwards, so that training starts from the same place as without the test.
"""

from __future__ import annotations

import contextvars
import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError, ZooError
from zoo_core.train._utils import _Printer

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core.train._dist import _Dist

START_LR, END_LR, NUM_ITER = 1e-7, 10.0, 100
BETA, DIVERGE = 0.98, 4.0
PLOT, RECORD = "lr_find.png", "lr_find.json"
# zoo lr-find's settings while it runs finetune() up to the test (None: finetune --lr auto)
ONLY: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "zoo_lr_find_only", default=None)


@dataclass
class LRFindResult:
    """What the range test measured and suggests (``lr``: the valley suggestion)."""

    lr: float
    steep: float
    min_div10: float
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    diverged_at: float | None = None
    start_lr: float = START_LR
    end_lr: float = END_LR
    num_iter: int = NUM_ITER
    plot: str | None = None

    def as_dict(self, curve: bool = False) -> dict[str, Any]:
        d = {"suggestion": self.lr, "method": "valley (fastai)", "steep": self.steep,
             "min_div10": self.min_div10, "diverged_at": self.diverged_at,
             "start_lr": self.start_lr, "end_lr": self.end_lr, "num_iter": self.num_iter,
             "steps": len(self.lrs), "plot": self.plot}
        if curve:
            d.update(lrs=self.lrs, losses=self.losses)
        return d


class LRFindDone(ZooError):  # noqa: N818 (control flow: zoo lr-find stops the run here)
    """Raised through finetune() when only the test was asked for (zoo lr-find)."""

    def __init__(self, result: LRFindResult) -> None:
        super().__init__("learning-rate range test done")
        self.result = result


def check_range(start_lr: float, end_lr: float, num_iter: int) -> None:
    if not (isinstance(start_lr, (int, float)) and start_lr > 0 and
            isinstance(end_lr, (int, float)) and end_lr > start_lr):
        raise InvalidArgumentError(f"--start-lr {start_lr!r} and --end-lr {end_lr!r}: need "
                                   "0 < start < end (default 1e-7 to 10)")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 10:
        raise InvalidArgumentError(f"--num-iter must be an integer >= 10, got {num_iter!r}")


def parse_lr(text: str) -> float | str:
    """``--lr``'s type: a positive number or ``auto``."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgumentError(f"--lr must be a positive number or 'auto', got "
                                   f"{text!r}") from None
    return value


def valley(losses: list[float]) -> int:
    """fastai's ``valley``: the index a third and a half into the longest strictly
    decreasing run (longest decreasing subsequence) of ``losses``."""
    n = len(losses)
    lds, start, end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[end] < lds[i]:
                end, start = i, i - lds[i]
    sections = (end - start) / 3
    return min(n - 1, max(0, start + int(sections) + int(sections / 2)))


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float, float]:
    """(valley, steepest descent, minimum / 10) of a smoothed curve, fastai's way: the
    first few and the last points (the divergence) left out."""
    n = len(lrs)
    if n < 6:
        raise InvalidArgumentError(
            f"the learning-rate range test diverged after {n} steps, too early to suggest "
            f"anything (the loss blew up at lr {lrs[-1] if lrs else float('nan'):.2g}); "
            "lower --start-lr")
    skip = min(5, n // 5)
    xs, ys = lrs[skip:n - 1], losses[skip:n - 1]
    logs = [math.log(x) for x in xs]
    grads = [(ys[i + 1] - ys[i]) / (logs[i + 1] - logs[i]) for i in range(len(ys) - 1)]
    steep = xs[min(range(len(grads)), key=grads.__getitem__)]
    low = xs[min(range(len(ys)), key=ys.__getitem__)] / 10
    return xs[valley(ys)], steep, low


def _batches(trainer: Any, epoch: int) -> Any:
    """The trainer's training batches of one epoch, as its loop draws them; ``(None,
    None)`` for a batch with nothing decodable (under DDP it still joins the step)."""
    import torch

    from zoo_core.train._features import _loader

    ctx, bs = trainer.ctx, trainer.local_bs
    sampler = trainer._sampler(len(trainer.train_ds), epoch)
    if trainer.cached:
        order = list(sampler)
        for i in range(0, len(order), bs):
            idx = torch.tensor(order[i:i + bs], dtype=torch.long)
            idx = idx[trainer.train_valid[idx]]
            if not len(idx):
                yield None, None
                continue
            dev = idx.to(ctx.device)
            yield trainer.train_feats[dev], trainer.train_labels[dev]
        return
    gen = torch.Generator().manual_seed(trainer.seed * 7919 + epoch + ctx.rank)
    for item in _loader(trainer.train_ds, None, bs, trainer.num_workers, sampler=sampler,
                        generator=gen, pin=ctx.device.type == "cuda"):
        trainer._note_bad(item.bad)
        if item.x is None:
            yield None, None
        else:
            yield (item.x.to(ctx.device, non_blocking=True),
                   item.y.to(ctx.device, non_blocking=True))


def range_test(ctx: _Dist, trainer: Any, opt: Any, *, start_lr: float = START_LR,
               end_lr: float = END_LR, num_iter: int = NUM_ITER) -> LRFindResult:
    """Run the test with ``trainer``'s prepared model and optimizer ``opt``; restore both."""
    import numpy as np
    import torch

    check_range(start_lr, end_lr, num_iter)
    model = trainer.model
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())
    scaler = getattr(ctx.acc, "scaler", None)
    saved_scaler = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
           torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    updates = trainer.updates
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, diverged = 0.0, math.inf, None
    try:
        trainer._set_train_mode()
        opt.zero_grad(set_to_none=True)
        epoch, step = 10_000, 0  # sampler epochs of their own: not the run's first batches
        while step < num_iter and diverged is None:
            for x, y in _batches(trainer, epoch):
                lr = start_lr * (end_lr / start_lr) ** (step / (num_iter - 1))
                for group in opt.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                loss_sum, _, n = trainer._micro_step(opt, x, y, last=True, window_images=(
                    0 if y is None else len(y)), ema=None)
                t = torch.tensor([loss_sum, float(n)], dtype=torch.float64,
                                 device=ctx.device)
                ctx.all_reduce_(t)  # every rank sees the same curve and stops together
                if float(t[1]) == 0:
                    continue
                loss = float(t[0] / t[1])
                step += 1
                if not math.isfinite(loss):
                    diverged = lr
                    break
                avg = BETA * avg + (1 - BETA) * loss
                smooth = avg / (1 - BETA ** step)
                lrs.append(lr)
                losses.append(smooth)
                best = min(best, smooth)
                if smooth > DIVERGE * best:
                    diverged = lr
                    break
                if step >= num_iter:
                    break
            epoch += 1
            if step == 0:
                raise InvalidArgumentError("the learning-rate range test found no training "
                                           "image it could decode")
    finally:
        model.load_state_dict(saved_model)
        opt.load_state_dict(saved_opt)
        opt.zero_grad(set_to_none=True)
        if scaler is not None and saved_scaler is not None:
            scaler.load_state_dict(saved_scaler)
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        np.random.set_state(rng[2])
        if rng[3] is not None:
            torch.cuda.set_rng_state_all(rng[3])
        trainer.updates = updates
    lr, steep, low = suggest(lrs, losses)
    return LRFindResult(lr=lr, steep=steep, min_div10=low, lrs=lrs, losses=losses,
                        diverged_at=diverged, start_lr=start_lr, end_lr=end_lr,
                        num_iter=num_iter)


def use_lr(opt: Any, lr: float) -> None:
    """Make ``lr`` the base rate of every group (the scheduler re-reads ``initial_lr``)."""
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] = lr


def plot(path: Path, res: LRFindResult, title: str) -> None:
    """The smoothed loss against the learning rate (log scale), the suggestions marked."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(res.lrs, res.losses, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    for value, name, style in ((res.lr, "valley (suggested)", "-"),
                               (res.steep, "steepest", "--"),
                               (res.min_div10, "min / 10", ":")):
        ax.axvline(value, color="tab:red" if style == "-" else "gray", linestyle=style,
                   label=f"{name} {value:.2g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def auto_lr(ctx: _Dist, opts: Any, run: Any, *, ckpt: Any, default: float, epochs: int,
            title: str, say: _Printer) -> tuple[float, LRFindResult | None]:
    """``--lr auto`` after prepare_training: the rate to train with, and the test's result
    (``None`` when no test ran). A resumed run keeps the rate its checkpoint recorded;
    a solved head (lbfgs) has no rate. Under zoo lr-find (:data:`ONLY`), the plot and
    ``lr_find.json`` are written and :class:`LRFindDone` ends the run."""
    only = ONLY.get()
    if ckpt is not None:
        lr = float(ckpt.get("signature", {}).get("lr", default))
        say(f"lr          auto: {lr:g}, as the checkpoint's range test found it")
        return lr, None
    if run.trainer.solver:
        if only is not None:
            raise InvalidArgumentError(
                "nothing to find: linear_probe's head is solved by L-BFGS (no learning "
                "rate); pass --probe-solver sgd to test the rate of an SGD-trained head")
        say("lr          auto: the head is solved in one step, no learning rate to find")
        return default, None
    settings = only or {}
    res = range_test(ctx, run.trainer, run.opt, start_lr=settings.get("start_lr", START_LR),
                     end_lr=settings.get("end_lr", END_LR),
                     num_iter=settings.get("num_iter", NUM_ITER))
    res = ctx.broadcast(res)
    from zoo_core.train._recipe import create_scheduler

    use_lr(run.opt, res.lr)
    run.scheduler = create_scheduler(run.opt, run.recipe, epochs)
    say(f"lr          auto: {res.lr:.3g} (range test over {len(res.lrs)} steps, "
        f"{res.start_lr:g} to {res.end_lr:g}"
        + (f", diverged at {res.diverged_at:.2g}" if res.diverged_at else "")
        + f"; steepest {res.steep:.2g}, min/10 {res.min_div10:.2g})")
    if opts.out is not None:
        res.plot = str(opts.out / PLOT)
        if ctx.main:
            plot(opts.out / PLOT, res, title)
    if only is not None:
        if ctx.main and opts.out is not None:
            import json

            from zoo_core.train._utils import _atomic_write_text

            _atomic_write_text(opts.out / RECORD,
                               json.dumps(res.as_dict(curve=True), indent=2) + "\n")
        raise LRFindDone(res)
    return res.lr, res
