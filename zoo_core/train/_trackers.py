"""Experiment trackers of a finetune run (``--log-with``), through accelerate's trackers.

``log_with`` is one name or several (``"tensorboard,mlflow"`` or a list): ``tensorboard``
(events in ``OUT/tensorboard``), ``mlflow`` (a local file store in ``OUT/mlruns`` unless
``MLFLOW_TRACKING_URI`` says otherwise), ``wandb``, ``aim`` (a repo in ``OUT``) and
``csv`` (``OUT/metrics.csv``, which every run with ``--out`` writes anyway). A tracker
whose package is missing is refused before the run starts, naming what to pip install.
The loop logs each epoch's metrics to every tracker (``ctx.acc.log``); the run's
hyperparameters are their configuration.

A resumed run (``resume=True``, ``zoo finetune --resume``) continues the same MLflow run:
its id is kept in ``OUT/trackers.json`` when the run starts. Its parameters are not logged
again (MLflow refuses a changed value, and ``--epochs`` may grow on resume); a run id the
store no longer knows starts a new run, with a warning in the log.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core.train._dist import _Dist

# name -> (modules, any of which provides it; what to pip install)
TRACKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "'zoo-core[tensorboard]'"),
    "mlflow": (("mlflow",), "mlflow-skinny"),
    "wandb": (("wandb",), "wandb"),
    "aim": (("aim",), "aim"),
    "csv": ((), ""),
}
EXPERIMENT = "zoo_core"  # MLflow's experiment / the project name of the other trackers
RECORD = "trackers.json"  # OUT/trackers.json: {"mlflow_run_id": ...}

logger = logging.getLogger(__name__)


def parse_log_with(log_with: str | Sequence[str] | None, out: Any) -> str | None:
    """Check ``log_with`` and return it as one comma-separated string (what ``run.json``
    records), or ``None``. Refuses unknown names, missing packages and a run without
    ``out`` (every tracker here writes beside the run)."""
    if log_with is None or log_with == "" or log_with == []:
        return None
    items = log_with.split(",") if isinstance(log_with, str) else list(log_with)
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if name not in TRACKERS:
            raise InvalidArgumentError(
                f"--log-with: unknown tracker {item!r}; choose from "
                f"{', '.join(TRACKERS)} (several: --log-with tensorboard,mlflow)")
        if name not in names:
            names.append(name)
    for name in names:
        modules, pip = TRACKERS[name]
        if modules and not any(importlib.util.find_spec(m) is not None for m in modules):
            raise InvalidArgumentError(f"--log-with {name} needs the {modules[0]} package, "
                                       f"which is not installed: pip install {pip}")
    if out is None:
        raise InvalidArgumentError(f"--log-with {','.join(names)} needs out=DIR (--out): "
                                   "the trackers write beside the run")
    return ",".join(names)


def _tracker(name: str, out: Path, run_id: str | None = None) -> Any:
    from accelerate import tracking

    if name == "tensorboard":
        return tracking.TensorBoardTracker("tensorboard", str(out))
    if name == "mlflow":
        import mlflow

        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # MLflow 3 keeps its file store only on request; a run's own folder is the
            # simplest local store there is (mlflow ui --backend-store-uri OUT/mlruns)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
        return tracking.MLflowTracker(EXPERIMENT, run_name=out.name, run_id=run_id)
    if name == "wandb":
        return tracking.WandBTracker(EXPERIMENT, name=out.name, dir=str(out))
    if name == "aim":
        return tracking.AimTracker(out.name, str(out))
    raise AssertionError(name)  # pragma: no cover


def _recorded(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _start(name: str, out: Path, run_id: str | None) -> Any:
    tracker = _tracker(name, out, run_id)
    try:
        tracker.start()
    except Exception:
        if run_id is None:
            raise
        # the store lost the run (deleted mlruns, another tracking URI): a new one
        logger.warning("--log-with %s: run %s to resume is not in the store; a new run "
                       "starts", name, run_id)
        tracker = _tracker(name, out)
        tracker.start()
    return tracker


def start_trackers(ctx: _Dist, log_with: str | None, out: Path | None,
                   config: dict[str, Any], *, resuming: bool = False) -> None:
    """Start the run's trackers on the main process and store ``config`` in each;
    :meth:`_Dist.close` finishes them. ``resuming``: continue the recorded MLflow run."""
    if not log_with or out is None or not ctx.main:
        return
    from zoo_core.train._utils import _atomic_write_text

    plain = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
             for k, v in config.items()}
    recorded = _recorded(out) if resuming else {}
    for name in log_with.split(","):
        if name == "csv":
            continue
        run_id = recorded.get("mlflow_run_id") if name == "mlflow" else None
        run_id = run_id if isinstance(run_id, str) and run_id else None
        try:
            tracker = _start(name, out, run_id)
        except InvalidArgumentError:
            raise
        except Exception as exc:  # a tracker's own failure (bad URI, no login...)
            raise InvalidArgumentError(
                f"--log-with {name}: the tracker could not start ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        ctx.acc.trackers.append(tracker)
        if name == "mlflow":
            new_id = tracker.active_run.info.run_id
            if new_id == run_id:
                continue  # the same run goes on: its parameters are there already
            _atomic_write_text(out / RECORD, json.dumps({"mlflow_run_id": new_id}) + "\n")
        tracker.store_init_configuration(plain)
