"""The epochs of one run: schedule, train, evaluate, log, checkpoint, stop.

After every epoch rank 0 rewrites ``metrics.json`` / ``metrics.csv`` / ``curves.png``,
swaps in ``best/`` when validation accuracy improved, and writes the checkpoint
(``state.json`` last: it is the commit point). Other ranks only train and evaluate.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.train._checkpoint import _read_epoch, _rng_state, _save_checkpoint
from zoo_core.train._report import _plot, _save_best, _write_metrics
from zoo_core.train._results import EpochMetrics
from zoo_core.train._utils import writing

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo_core.train._dist import _Dist
    from zoo_core.train._trainer import _Trainer
    from zoo_core.train._utils import _Printer

# Test hook: after the checkpoint of epoch N is written, exit hard (os._exit) as a crash.
EXIT_AFTER_EPOCH_ENV = "ZOO_FINETUNE_EXIT_AFTER_EPOCH"
EXIT_CODE = 75
# auto's race (._race): the runs it starts stop after this epoch of their own schedule.
_STOP_AFTER: contextvars.ContextVar[int | None] = contextvars.ContextVar("stop_after",
                                                                        default=None)


@contextlib.contextmanager
def stopping_after(epoch: int | None) -> Iterator[None]:
    """Runs started inside stop after ``epoch`` (``None``: at the end), the learning-rate
    schedule still spanning their planned epochs: the first epochs of a full run."""
    token = _STOP_AFTER.set(epoch)
    try:
        yield
    finally:
        _STOP_AFTER.reset(token)


@dataclass
class LoopState:
    """What the loop carries between epochs and into a checkpoint."""

    history: list[EpochMetrics] = field(default_factory=list)
    kept: list[tuple[float, int]] = field(default_factory=list)  # (val acc, epoch), best K
    stale: int = 0  # epochs since the last improvement (early stopping)
    stopped_early: int | None = None  # the epoch at which patience ran out
    train_seconds: float = 0.0
    trained_images: int = 0

    @property
    def best_acc(self) -> float:
        return max((m.val_acc for m in self.history), default=-1.0)

    def as_meta(self) -> dict[str, Any]:
        return {"history": [m.as_dict() for m in self.history],
                "kept": [list(k) for k in self.kept], "stale": self.stale,
                "stopped_early": self.stopped_early}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LoopState:
        return cls(history=[EpochMetrics(**m) for m in meta.get("history", [])],
                   kept=[(float(a), int(e)) for a, e in meta.get("kept", [])],
                   stale=int(meta.get("stale", 0)))


@dataclass
class LoopConfig:
    epochs: int
    start_epoch: int
    accumulate: int
    early_stop: int | None
    keep: int
    out_dir: Path | None
    title: str
    meta: dict[str, Any]  # strategy, reason, signature... stored in every checkpoint
    training_data: dict[str, Any]
    header: dict[str, Any]  # metrics.json header (the run record included)
    card: str  # model card section
    resume_hint: str


def run_epochs(cfg: LoopConfig, state: LoopState, *, ctx: _Dist, trainer: _Trainer,
               model: nn.Module, opt: Any, scheduler: Any, ema: Any, say: _Printer) -> None:
    """Train epochs ``cfg.start_epoch..cfg.epochs`` (or until early stopping)."""
    from tqdm import tqdm

    exit_after = int(os.environ.get(EXIT_AFTER_EPOCH_ENV, "0") or 0)
    stop_after = _STOP_AFTER.get()
    ckpt_dir = cfg.out_dir / "checkpoint" if cfg.out_dir is not None else None
    epoch = cfg.start_epoch
    # On a terminal: the run's bar (ETA over every remaining epoch's batches) above the
    # epoch's bar. Elsewhere: the plain epoch lines below.
    run_bar = tqdm(total=(cfg.epochs - cfg.start_epoch + 1) * trainer.steps_per_epoch(),
                   desc=f"run: {cfg.epochs} epochs", unit="batch", file=sys.stderr,
                   disable=not trainer.progress, dynamic_ncols=True, leave=False)
    trainer.run_bar = run_bar if trainer.progress else None
    try:
        for epoch in range(cfg.start_epoch, cfg.epochs + 1):
            scheduler.step(epoch - 1)
            lr_now = max(g["lr"] for g in opt.param_groups)
            t0 = time.perf_counter()
            if trainer.solver:
                tr_loss, tr_acc, n_seen = trainer.solve()
                run_bar.update(1)
            else:
                tr_loss, tr_acc, n_seen = trainer.train_epoch(
                    opt, epoch, cfg.epochs, accumulate=cfg.accumulate, ema=ema)
            t_train = time.perf_counter() - t0
            va_loss, va_acc, n_val = trainer.evaluate(ema.module if ema is not None else None)
            seconds = time.perf_counter() - t0
            state.train_seconds += t_train
            state.trained_images += n_seen
            metrics = EpochMetrics(epoch, tr_loss, tr_acc, va_loss, va_acc, lr_now,
                                   round(seconds, 4), n_seen / t_train if t_train > 0 else 0.0,
                                   n_val)
            improved = va_acc > state.best_acc
            state.history.append(metrics)
            state.stale = 0 if improved else state.stale + 1
            if cfg.early_stop is not None and state.stale >= cfg.early_stop:
                state.stopped_early = epoch
            run_bar.set_description(f"run: epoch {epoch}/{cfg.epochs} done, val acc "
                                    f"{va_acc:.3f}", refresh=False)
            with tqdm.external_write_mode(file=sys.stdout):  # the line above the bars
                say(f"epoch {epoch:>3}/{cfg.epochs}  train loss {tr_loss:.4f} acc "
                    f"{tr_acc:.3f}  val loss {va_loss:.4f} acc {va_acc:.3f} ({n_val})  lr "
                    f"{lr_now:.2e}  {seconds:.2f}s" + ("  *best" if improved else ""))
            if ctx.acc.trackers:
                ctx.acc.log({k: v for k, v in metrics.as_dict().items() if k != "epoch"},
                            step=epoch)
            _after_epoch(cfg, state, ctx=ctx, model=model, opt=opt, ema=ema,
                         improved=improved, ckpt_dir=ckpt_dir, updates=trainer.updates)
            if exit_after and epoch == exit_after:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_CODE)
            if stop_after is not None and epoch >= stop_after:
                break
            if state.stopped_early is not None:
                say(f"early stop  no better validation accuracy for {cfg.early_stop} "
                    f"epoch(s); stopped after epoch {epoch} (best "
                    f"{state.best_acc:.3f})")
                break
    except KeyboardInterrupt:
        run_bar.close()  # before the message below
        if ctx.main:
            # What state.json committed, not what was trained: a Ctrl-C while epoch N's
            # files were being written leaves the checkpoint of epoch N-1.
            done = _read_epoch(ckpt_dir) if ckpt_dir is not None else None
            trained = state.history[-1].epoch if state.history else None
            when = (f"while saving epoch {epoch}" if trained == epoch
                    else f"during epoch {epoch}")
            where = (f"the last checkpoint (epoch {done}) is in {ckpt_dir}; "
                     if done is not None else "")
            print(f"\ninterrupted {when}; {where}{cfg.resume_hint}",
                  file=sys.stderr, flush=True)
        raise
    finally:
        run_bar.close()
        trainer.run_bar = None


def _after_epoch(cfg: LoopConfig, state: LoopState, *, ctx: _Dist, model: nn.Module,
                 opt: Any, ema: Any, improved: bool, ckpt_dir: Path | None,
                 updates: int) -> None:
    if cfg.out_dir is None:
        return
    rng_states = ctx.gather_objects(_rng_state(ctx.device))
    if ctx.main:
        m = state.history[-1]
        with writing(cfg.out_dir / "metrics.json"):
            _write_metrics(cfg.out_dir, state.history, cfg.header)
        with writing(cfg.out_dir / "curves.png"):
            _plot(cfg.out_dir / "curves.png", state.history, cfg.title)
        weights = ema.module if ema is not None else model
        if improved:
            with writing(cfg.out_dir / "best"):
                _save_best(weights, cfg.out_dir / "best",
                           metrics={"val_accuracy": m.val_acc, "val_loss": m.val_loss,
                                    "epoch": m.epoch, "epochs": cfg.epochs},
                           training_data=cfg.training_data, card=cfg.card)
        state.kept = sorted([*state.kept, (m.val_acc, m.epoch)],
                            key=lambda k: (-k[0], k[1]))[:cfg.keep]
        assert ckpt_dir is not None
        finished = m.epoch >= cfg.epochs or state.stopped_early is not None
        _save_checkpoint(ckpt_dir, epoch=m.epoch, model=model, opt=opt,
                         rng_states=rng_states, ema=ema.module if ema is not None else None,
                         keep_epochs=[e for _, e in state.kept],
                         meta={**cfg.meta, **state.as_meta(), "epochs": cfg.epochs,
                               "finished": finished, "updates": updates})
    ctx.barrier()
