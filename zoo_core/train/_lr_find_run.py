"""``lr_find()``: the learning-rate range test of :mod:`._lr_find` on its own, through the
same set-up as :func:`~zoo_core.train._pipeline.finetune` (data, split, strategy, model,
``lp_ft``'s head phase, optimizer with layer decay), stopped before the first epoch."""

from __future__ import annotations

import os
from typing import Any

from zoo_core.train._lr_find import (
    END_LR,
    NUM_ITER,
    ONLY,
    START_LR,
    LRFindDone,
    LRFindResult,
    check_range,
)


def lr_find(model: str, data: str | os.PathLike[str] | None = None, *,
            start_lr: float = START_LR, end_lr: float = END_LR, num_iter: int = NUM_ITER,
            **finetune_kwargs: Any) -> LRFindResult:
    """Run the LR range test for ``model`` on ``data`` as ``finetune(model, data,
    **finetune_kwargs)`` would train it; return its :class:`LRFindResult` (``.lr``: the
    suggestion). With ``out=DIR``: ``DIR/lr_find.png`` and ``DIR/lr_find.json``. The
    model trains for ``num_iter`` steps and nothing of it is kept."""
    from zoo_core.errors import InvalidArgumentError
    from zoo_core.train._pipeline import finetune

    check_range(start_lr, end_lr, num_iter)
    for key in ("lr", "resume", "push_to_hub"):
        if finetune_kwargs.get(key) not in (None, False):
            raise InvalidArgumentError(f"lr_find() takes no {key}= (--{key.replace('_', '-')}):"
                                       " it only tests learning rates")
    token = ONLY.set({"start_lr": start_lr, "end_lr": end_lr, "num_iter": num_iter})
    try:
        finetune(model, data, lr="auto", **finetune_kwargs)
    except LRFindDone as done:
        return done.result
    finally:
        ONLY.reset(token)
    raise AssertionError("finetune() returned without running the range test")  # pragma: no cover
