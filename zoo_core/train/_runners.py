"""auto's trial runs: quiet, file-less :func:`~zoo_core.train._pipeline.finetune` runs.

Each maker takes ``finetune`` itself (the pipeline passes its own), so that this module
does not import the pipeline that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo_core.train._defaults import default_epochs
from zoo_core.train._loop import stopping_after
from zoo_core.train._race import race_epoch


def make_pilot(finetune: Callable[..., Any], model_name: str, **kwargs: Any) -> Any:
    """auto's pilot runner: ``pilot(strategy, folder, epochs)`` -> final holdout accuracy of
    a quiet, file-less ``finetune`` run on an already split folder."""
    def pilot(strategy: str, folder: Any, epochs: int) -> float:
        _, res = finetune(model_name, folder, strategy=strategy, epochs=epochs,
                          progress=False, verbose=False, **kwargs)
        return res.final_val_acc

    return pilot


def make_race(finetune: Callable[..., Any], model_name: str, epochs: int | None,
              **kwargs: Any) -> Any:
    """auto's race runner (:mod:`._race`): ``race(strategy, folder, fraction)`` -> the last
    epoch's figures of a quiet, file-less ``finetune`` run of ``epochs`` (``None``: the
    strategy's default) stopped after its :func:`~._race.race_epoch`."""
    from zoo_core.strategies._strategies import parse_strategy

    def race(strategy: str, folder: Any, fraction: float) -> dict[str, Any]:
        planned = epochs or default_epochs(parse_strategy(strategy).kind)
        with stopping_after(race_epoch(fraction, planned)):
            _, res = finetune(model_name, folder, strategy=strategy, epochs=planned,
                              progress=False, verbose=False, **kwargs)
        m = res.history[-1]
        return {"epoch": m.epoch, "epochs": 1 if res.extra.get("probe") else planned,
                "val_acc": m.val_acc, "val_loss": m.val_loss}

    return race
