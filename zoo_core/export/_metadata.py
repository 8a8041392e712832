"""The preprocessing record written beside an exported model (``<file>.json``): what a
deployment must do to an image before the model sees it, and what the outputs mean."""

from __future__ import annotations

import math
from typing import Any

from zoo_core import __version__


def metadata_path(out: Any) -> Any:
    """``model.onnx`` -> ``model.onnx.json``: the record sits beside the file it describes."""
    return out.with_name(out.name + ".json")


def preprocessing(model: Any) -> dict[str, Any]:
    """timm's eval transform of ``model`` spelled out: resize, center crop, scale, normalise."""
    from zoo_core.data._data import data_config_of

    cfg = data_config_of(model)
    chans, height, width = (int(v) for v in cfg["input_size"])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    crop_mode = cfg.get("crop_mode") or "center"
    short = math.floor(min(height, width) / crop_pct)
    if height == width and crop_mode == "center":
        resize = (f"resize the shorter side to {short} px ({cfg['interpolation']}; the "
                  "longer side keeps the aspect ratio, truncated to an integer)")
    else:  # timm's other eval resizes: say which, the numbers are in the record
        resize = (f"resize as timm's eval transform does for crop_mode {crop_mode!r} and "
                  f"input {height}x{width} at crop_pct {crop_pct:g} "
                  "(timm.data.create_transform(is_training=False))")
    return {
        "input_size": [chans, height, width],
        "color": "grayscale" if chans == 1 else "RGB",
        "interpolation": cfg["interpolation"],
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
        "resize_shorter_side": short,
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "steps": [
            f"convert to {'grayscale' if chans == 1 else 'RGB'}",
            resize,
            f"center crop {height}x{width}",
            "scale pixels to [0, 1] (divide by 255)",
            "subtract mean, divide by std, per channel",
            f"float32 tensor of shape [batch, {chans}, {height}, {width}] (NCHW)",
        ],
    }


def record(model: Any, *, source: str, fmt: str, exporter: str, file: str,
           parity: dict[str, Any]) -> dict[str, Any]:
    """Everything a deployment needs to feed the exported file and read its output."""
    import torch

    zoo = model.zoo
    labels = list(zoo.label_names) if zoo.label_names else None
    return {
        "file": file,
        "format": fmt,
        "exporter": exporter,
        "source": source,
        "model": zoo.name,
        "input": {"name": "input", "dtype": "float32", "layout": "NCHW",
                  "batch": "dynamic"},
        "output": {"name": "logits", "dtype": "float32",
                   "meaning": "unnormalised class scores; softmax gives probabilities",
                   "num_classes": int(zoo.num_classes)},
        "labels": labels,
        "preprocessing": preprocessing(model),
        "parity": parity,
        "versions": {"zoo_core": __version__, "torch": torch.__version__.split("+")[0]},
    }
