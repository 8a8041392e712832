"""Checks of finetune()'s arguments: each bad value gets an error naming its flag."""

from __future__ import annotations

from typing import Any

from zoo_core.errors import InvalidArgumentError


def _positive_int(flag: str, v: Any, minimum: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InvalidArgumentError(
            f"{flag} must be an integer >= {minimum}, got {v!r}")


def check_args(*, epochs: int, batch_size: int, lr: float | None, val_fraction: float,
               world: int, accumulate: int, keep: int, early_stop: int | None,
               threads: int | None, num_workers: int) -> None:
    _positive_int("--epochs / epochs", epochs)
    _positive_int("--batch-size / batch_size", batch_size)
    _positive_int("--accumulate / accumulate", accumulate)
    _positive_int("--keep / keep", keep)
    if early_stop is not None:
        _positive_int("--early-stop / early_stop (patience in epochs)", early_stop)
    if threads is not None:
        _positive_int("--threads / threads", threads)
    _positive_int("--workers / num_workers", num_workers, minimum=0)
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise InvalidArgumentError(f"--lr / lr must be a positive number, got {lr!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidArgumentError(
            f"--val-fraction / val_fraction must be in [0, 1), got {val_fraction!r}")
    if batch_size % world:
        raise InvalidArgumentError(
            f"--batch-size {batch_size} is the global batch and must divide evenly across "
            f"{world} processes; use a multiple of {world}")


def parse_input_size(value: Any) -> tuple[int, int, int] | None:
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


SMALL_INPUT_PIXELS = 64 * 64


def default_threads(model: str | None = None,
                    input_size: tuple[int, int, int] | None = None) -> int:
    """Torch threads when ``threads`` is not given. Small inputs (up to 64x64 pixels, the
    embedded zoonet task): one thread; tiny convolutions stop scaling early, and on a
    shared 2-core machine two OpenMP threads ran 6x slower than one
    (benchmarks/bench_threads.py). Larger inputs: one per core this process may use, at
    most 4. The input size is ``input_size`` or the registered model's data config."""
    import os

    if input_size is None and model is not None and not model.startswith("hf-hub:"):
        try:
            from zoo_core.registry._registry import get_registry

            input_size = tuple(get_registry().resolve(model).spec.data_config.input_size)
        except Exception:  # an unknown name fails later with its own clear error
            input_size = None
    if input_size is not None and input_size[1] * input_size[2] <= SMALL_INPUT_PIXELS:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (macOS, Windows)
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def check_log_with(log_with: str | None, out: Any) -> None:
    if log_with not in (None, "tensorboard"):
        raise InvalidArgumentError(f"--log-with: only 'tensorboard' is supported, got "
                                   f"{log_with!r}")
    if log_with == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and \
                importlib.util.find_spec("tensorboardX") is None:
            raise InvalidArgumentError("--log-with tensorboard needs TensorBoard: pip install "
                                       "'zoo-core[tensorboard]'")
        if out is None:
            raise InvalidArgumentError("--log-with tensorboard needs out=DIR (--out)")


def check_race(race: Any, strategy: Any) -> None:
    """``race`` (``--race``): a share of the epochs in [0, 1], for ``auto`` only."""
    if race is None:
        return
    if isinstance(race, bool) or not isinstance(race, (int, float)) or not 0 <= race <= 1:
        raise InvalidArgumentError(
            f"--race / race must be a share of the epochs between 0 (off) and 1 (every "
            f"strategy trained in full), got {race!r}")
    if str(strategy) != "auto":
        raise InvalidArgumentError(
            f"--race / race={race} races the strategies for auto; with --strategy "
            f"{strategy} there is nothing to race (drop it, or use --strategy auto)")
