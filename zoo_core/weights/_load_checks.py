"""What may be loaded from a weights file into a model, decided before anything is loaded.

* **Dtypes.** A file's tensor may be cast to the model's dtype only within its kind:
  float to float (an fp16 file gives an fp32 model), int to int when every value fits,
  bool to bool, complex to complex. Integers, bools or complex numbers loaded into float
  parameters, or floats into integer buffers (``num_batches_tracked`` of 3.7 would become
  3), change what the numbers mean: refused, naming the key.
* **Heads.** The classifier head is loaded or dropped as a *whole* module: when any of its
  file tensors cannot load (another shape, or a key the model lacks) or any of the model's
  head tensors is missing from the file, every head tensor of the file is dropped and the
  head keeps the architecture's initialisation. A head with ``head.bias`` from the file
  and a random ``head.weight`` is never built.

Tensor names from a file are escaped in messages
(:func:`~zoo_core.weights._safetensors_header.printable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo_core.errors import WeightsError
from zoo_core.weights._safetensors_header import printable

__all__ = ["check_dtypes", "split_head"]

_MAX_LISTED = 8


def _kind(dtype: Any) -> str:
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "float"
    if str(dtype) == "torch.bool":
        return "bool"
    return "int"


def check_dtypes(sd: Mapping[str, Any], expected: Mapping[str, Any], shown: str) -> None:
    """Raise ``WeightsError`` for file tensors whose dtype can't become the model's."""
    import torch

    bad: list[str] = []
    for key, value in sd.items():
        target = expected.get(key)
        if target is None or value.dtype == target.dtype:
            continue
        have, want = _kind(value.dtype), _kind(target.dtype)
        if have != want:
            bad.append(f"{printable(key)} ({_name(value.dtype)} in the file, "
                       f"{_name(target.dtype)} in the model)")
        elif have == "int" and value.numel():
            info = torch.iinfo(target.dtype)
            low, high = int(value.min()), int(value.max())
            if low < info.min or high > info.max:
                bad.append(f"{printable(key)} (values {low}..{high} do not fit "
                           f"{_name(target.dtype)})")
    if bad:
        more = f" ... (+{len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
        raise WeightsError(
            f"weights file {printable(shown)!r} holds {len(bad)} tensor(s) whose dtype cannot "
            f"be cast to the model's without changing their meaning: "
            f"{', '.join(bad[:_MAX_LISTED])}{more}. Floats load into floats, integers into "
            "integers; save the weights from a model with the same dtypes")


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def split_head(sd: dict[str, Any], expected: Mapping[str, Any],
               head: str) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """Drop the head's file tensors as a whole when any of them cannot load.

    Returns ``(sd, dropped_file_keys, model_head_keys_allowed_missing)``.
    """
    prefix = head + "."
    file_head = [k for k in sd if k.startswith(prefix)]
    model_head = [k for k in expected if k.startswith(prefix)]
    fits = all(k in expected and expected[k].shape == sd[k].shape for k in file_head) and all(
        k in sd for k in model_head)
    if fits or not file_head:
        return sd, (), ()
    for k in file_head:
        del sd[k]
    return sd, tuple(file_head), tuple(model_head)
