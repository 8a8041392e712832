"""Small helpers shared by the finetune modules: printing, seeding, atomic writes."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import ZooError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never a half-written file left behind
        raise


def _atomic_save_tensors(path: Path, tensors: dict[str, Any],
                         metadata: dict[str, str] | None = None) -> str:
    """Write ``tensors`` to ``path`` through a temporary file; returns the sha256 of the
    bytes on disk (read back, so a short write cannot go unnoticed)."""
    from safetensors.torch import save_file

    from zoo_core._safefs import as_output_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        as_output_file(tmp)  # safetensors writes 0600; a run's files follow the umask
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunWriteError(ZooError, OSError):
    """A file of a run could not be written (a full disk, ``ulimit -f``...)."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` into one clear error naming it."""
    try:
        yield
    except ZooError:
        raise
    except Exception as exc:  # OSError, and SafetensorError, which carries errno as text
        if not isinstance(exc, OSError) and type(exc).__name__ != "SafetensorError":
            raise
        raise RunWriteError(
            f"could not write {path} ({type(exc).__name__}: {exc}); free some space (or "
            "raise the file size limit), then continue the run with --resume "
            "(resume=True)") from exc


def _cpu_state(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def _set_input_size(model: nn.Module, size: tuple[int, int, int] | None) -> None:
    if size is not None:
        model.zoo = model.zoo.replace(  # type: ignore[union-attr]
            data_config=dataclasses.replace(model.zoo.data_config, input_size=size))
