"""Small helpers shared by the finetune modules: printing, seeding, atomic writes."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
                         metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    from zoo_core._safefs import as_output_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        as_output_file(tmp)  # safetensors writes 0600; a run's files follow the umask
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _cpu_state(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def _set_input_size(model: nn.Module, size: tuple[int, int, int] | None) -> None:
    if size is not None:
        model.zoo = model.zoo.replace(  # type: ignore[union-attr]
            data_config=dataclasses.replace(model.zoo.data_config, input_size=size))
