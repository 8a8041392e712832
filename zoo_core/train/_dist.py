"""Rank, world size, device and precision of one finetune run, through accelerate.

One :class:`accelerate.Accelerator` per run. It reads what the launcher set up (plain
``python``, ``torchrun``, ``accelerate launch``, multi-node) and picks the device, the
process group (gloo on CPU, nccl on GPU) and mixed precision. The loop stays ours
(:mod:`._trainer`); this module only answers "who am I, where do I run, how do the
processes talk".
"""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    import torch

PRECISIONS = {"32": "no", "bf16": "bf16", "fp16": "fp16"}
_EXIT_HOOK: list[bool] = []


def _check_precision(precision: str, device: Any) -> str:
    import torch

    if precision not in PRECISIONS:
        raise InvalidArgumentError(
            f"--precision / precision= must be one of {', '.join(PRECISIONS)}, got "
            f"{precision!r}")
    on_cpu = (device is not None and torch.device(device).type == "cpu") or \
        not torch.cuda.is_available()
    if precision == "fp16" and on_cpu:
        raise InvalidArgumentError(
            "--precision fp16 needs a CUDA GPU (float16 autocast with a gradient scaler); "
            "on CPU use --precision bf16 (bfloat16 autocast, no scaler) or 32")
    return PRECISIONS[precision]


def _check_launcher() -> None:
    """``accelerate launch --cpu --num_processes N`` starts ONE process unless it is given
    an MPI hostfile (accelerate 1.x: the --cpu path is its "simple" launcher), so the run
    would silently train alone. Its tell: accelerate's CPU flag and a master address, but
    no rank from a launcher."""
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1") and "MASTER_ADDR" in env \
            and "WORLD_SIZE" not in env and "LOCAL_RANK" not in env \
            and "OMPI_COMM_WORLD_SIZE" not in env and "PMI_SIZE" not in env:
        raise InvalidArgumentError(
            "accelerate launch --cpu --num_processes N started a single process (accelerate "
            "spawns CPU processes only through MPI, --mpirun_hostfile). For N processes on "
            "CPU use `accelerate launch --multi_gpu --num_processes N ...` (it needs no GPU: "
            "zoo picks gloo on CPU) or `torchrun --nproc-per-node N -m zoo_core.cli ...`")


class _Dist:
    """Rank, world size and device of this process; the accelerator behind them."""

    def __init__(self, device: Any = None, *, precision: str = "32",
                 log_with: str | None = None, project_dir: Any = None) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState

        mixed = _check_precision(precision, device)
        _check_launcher()
        # cpu=True also on a machine without an accelerator: accelerate then sees a
        # torchrun / accelerate-launch world as MULTI_CPU (gloo); without it, NO
        cpu = (device is not None and torch.device(device).type == "cpu") or \
            not torch.accelerator.is_available()
        # A fresh precision per finetune() call; the process group (PartialState) stays,
        # so several runs in one torchrun process share it.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        try:
            self.acc = Accelerator(cpu=cpu, mixed_precision=mixed, log_with=log_with,
                                   project_dir=None if project_dir is None else str(project_dir))
        except (ValueError, ImportError) as exc:  # an unknown tracker, a missing package
            raise InvalidArgumentError(f"accelerate refused this run: {exc}") from exc
        if device is not None and torch.device(device).type != "cpu":
            want = torch.device(device)
            got = self.acc.device
            if want.type != got.type or (want.index is not None and want.index != got.index):
                raise InvalidArgumentError(
                    f"device={device!r}, but accelerate placed this process on {got}; "
                    "select GPUs with CUDA_VISIBLE_DEVICES or the launcher's options")
        self.precision = precision
        self.device: torch.device = self.acc.device
        self.rank: int = self.acc.process_index
        self.world: int = self.acc.num_processes
        self.local_rank: int = self.acc.local_process_index
        if self.active and not _EXIT_HOOK:
            # Kept for later finetune() calls in this process; torn down together at exit.
            atexit.register(_destroy_group)
            _EXIT_HOOK.append(True)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            self.acc.wait_for_everyone()

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        if not self.active:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        from accelerate.utils import gather_object

        return list(gather_object([obj]))

    def close(self) -> None:
        """Flush and close trackers (TensorBoard); the process group outlives one call."""
        # not Accelerator.end_training(): it also destroys the process group
        for tracker in self.acc.trackers:
            tracker.finish()


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # Leave together: a rank tearing gloo down while its peer still talks to it can
        # abort the peer at exit.
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()
