"""Fit pretrained tensors to a model built with ``in_chans`` or ``img_size``.

Done the way ``timm.create_model(..., pretrained=True)`` does it, with timm's own helpers,
so a zoo_core model and a timm model built from the same file hold the same numbers:

* ``in_chans``: the input convolution's filters go through
  ``timm.models.adapt_input_conv`` (summed for one channel, repeated and rescaled for
  more). Only 4-d tensors whose shapes differ in the input-channel dimension alone, with
  the model's side equal to ``in_chans``, are adapted.
* ``img_size``: absolute position embeddings (``...pos_embed``, ``(1, tokens, dim)``) go
  through ``timm.layers.resample_abs_pos_embed`` (bicubic, antialiased, prefix tokens
  kept), to the grid of the module's ``patch_embed``.

Everything else must still match exactly; the loader's shape check names what does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Adapter", "weights_adapter"]

Adapter = Callable[[dict[str, Any], Mapping[str, Any], Any], dict[str, Any]]


def weights_adapter(model_args: Mapping[str, Any]) -> Adapter | None:
    """The state-dict adapter for these model arguments, or None when none is needed."""
    in_chans = model_args.get("in_chans")
    resize = model_args.get("img_size") is not None

    if in_chans is None and not resize:
        return None

    def adapt(sd: dict[str, Any], expected: Mapping[str, Any], model: Any) -> dict[str, Any]:
        for key, value in list(sd.items()):
            target = expected.get(key)
            if target is None or tuple(target.shape) == tuple(value.shape):
                continue
            if in_chans is not None and _is_input_conv(value, target, in_chans):
                from timm.models import adapt_input_conv

                sd[key] = adapt_input_conv(in_chans, value, base_chans=value.shape[1])
            elif resize and key.rpartition(".")[2] == "pos_embed" and _is_pos_embed(
                    value, target):
                sd[key] = _resample_pos_embed(key, value, target, model)
        return sd

    return adapt


def _is_input_conv(value: Any, target: Any, in_chans: int) -> bool:
    return (value.ndim == 4 and target.ndim == 4 and target.shape[1] == in_chans
            and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:])


def _is_pos_embed(value: Any, target: Any) -> bool:
    return (value.ndim == 3 and target.ndim == 3 and value.shape[0] == target.shape[0] == 1
            and value.shape[2] == target.shape[2])


def _resample_pos_embed(key: str, value: Any, target: Any, model: Any) -> Any:
    from timm.layers import resample_abs_pos_embed

    owner_name = key.rpartition(".")[0]
    owner = model.get_submodule(owner_name) if owner_name else model
    prefix = 0 if getattr(owner, "no_embed_class", False) else int(
        getattr(owner, "num_prefix_tokens", 1))
    grid = getattr(getattr(owner, "patch_embed", None), "grid_size", None)
    if grid is None:
        side = math.isqrt(target.shape[1] - prefix)
        grid = (side, side)
    return resample_abs_pos_embed(value, new_size=list(grid), num_prefix_tokens=prefix,
                                  interpolation="bicubic", antialias=True, verbose=False)
