"""Rank, world size and device for one finetune run (torchrun-aware)."""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    import torch


class _Dist:
    """Rank, world size and device; a no-op shell in a single process."""

    def __init__(self, device: Any = None) -> None:
        import torch
        import torch.distributed as dist

        self.owns_group = False
        env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if device is not None:
            dev = torch.device(device)
        elif torch.cuda.is_available():
            dev = torch.device("cuda", self.local_rank if env_world > 1 else 0)
        else:
            dev = torch.device("cpu")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", self.local_rank if env_world > 1 else 0)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        self.device = dev
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        elif env_world > 1:
            if not dist.is_available():  # pragma: no cover
                raise InvalidArgumentError("WORLD_SIZE > 1 but torch.distributed is missing")
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            # Kept for later finetune() calls in this process (re-creating a default group
            # against torchrun's store can hang); destroyed when the interpreter exits.
            atexit.register(_destroy_group)
            self.owns_group = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world = 0, 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """The process group outlives one call (see ``__init__``)."""


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # Leave together: a rank tearing gloo down while its peer still talks to it can
        # abort the peer at exit (seen once under torchrun on a loaded machine).
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()
