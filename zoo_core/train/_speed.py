"""Speed settings of the device: channels_last and ``torch.compile`` (``--channels-last``,
``--compile``).

On CUDA, convolution nets train faster with NHWC tensors under bf16/fp16 autocast (cuDNN's
tensor-core kernels want channels_last), so ``channels_last="auto"`` (the default) turns it
on there and leaves the CPU alone (there it helps some nets and slows others). ``compile``
hands the trained module to ``torch.compile`` (``True``: the default inductor backend, or a
backend name): the first steps pay the compile time, the later ones run faster; evaluation
and the saved weights use the plain module. ``benchmarks/bench_cuda.py`` measures both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo_core.errors import InvalidArgumentError

CHANNELS_LAST = ("auto", "on", "off")


@dataclass(frozen=True)
class Speed:
    channels_last: bool = False
    compile: str | None = None  # a torch.compile backend

    def as_dict(self) -> dict[str, Any]:
        return {"channels_last": self.channels_last, "compile": self.compile}


def resolve_speed(channels_last: bool | str | None, compile: bool | str | None,
                  device: Any) -> Speed:
    """Check the two settings and decide them for ``device`` (the run's torch.device)."""
    if isinstance(channels_last, bool):
        want = "on" if channels_last else "off"
    else:
        want = "auto" if channels_last is None else str(channels_last).lower()
    if want not in CHANNELS_LAST:
        raise InvalidArgumentError(f"--channels-last must be one of {', '.join(CHANNELS_LAST)}"
                                   f", got {channels_last!r}")
    on = want == "on" or (want == "auto" and getattr(device, "type", str(device)) == "cuda")
    backend: str | None
    if compile is None or compile is False:
        backend = None
    elif compile is True:
        backend = "inductor"
    elif isinstance(compile, str) and compile:
        import torch

        if compile not in torch.compiler.list_backends(exclude_tags=()):
            raise InvalidArgumentError(
                f"--compile {compile}: not a torch.compile backend; choose from "
                f"{', '.join(torch.compiler.list_backends())} (default inductor)")
        backend = compile
    else:
        raise InvalidArgumentError(f"--compile / compile= takes True or a backend name, got "
                                   f"{compile!r}")
    return Speed(channels_last=on, compile=backend)

