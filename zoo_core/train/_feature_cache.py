"""Head-input features of a sample of images, cached per (model, weights sha256, data hash).

Layout, under :func:`zoo_core.weights._weights.cache_dir`::

    features/<key[:2]>/<key>.safetensors   "features" (N x D float32), "labels" (N int64)
    features/<key[:2]>/<key>.json          model, weights sha256, data hash, preprocessing,
                                           and the image paths in row order

``key`` is the sha256 of the model name, the weights sha256, the data hash and the
preprocessing (input size, mean, std, interpolation, crop). The **data hash** covers the
class names and, for every sampled image, its path, label, size and modification time, so
an edited image makes a new entry. Both files are written to a temporary name and renamed;
the JSON is written last and is what marks an entry complete. Never a pickle.

The JSON lists the paths row by row so that ``zoo finetune ... --strategy linear_probe``
of the same model and weights can take the rows of the images it shares with the sample
(:func:`load_rows`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

FORMAT = 1


def data_hash(classes: Sequence[str], samples: Sequence[tuple[str, int]]) -> str:
    """sha256 of the class names and each sample's path, label, size and mtime."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for path, label in samples:
        try:
            st = os.stat(path)
            ident = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            ident = "missing"
        digest.update(f"\0{os.path.abspath(path)}\0{label}\0{ident}".encode())
    return digest.hexdigest()


def preprocessing(model: Any) -> dict[str, Any]:
    """The parts of the model's data config that change its features."""
    dc = model.zoo.data_config
    return {k: v for k, v in asdict(dc).items()
            if k in ("input_size", "mean", "std", "interpolation", "crop_pct")}


def _root() -> Path:
    from zoo_core.weights._weights import cache_dir

    return cache_dir() / "features"


def entry_key(model: str, weights_sha256: str, data: str, prep: dict[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT, "model": model, "weights_sha256": weights_sha256,
                       "data_hash": data, "preprocessing": prep}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _paths(key: str) -> tuple[Path, Path]:
    base = _root() / key[:2] / key
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def load(key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached ``(features, labels)`` for ``key``, or ``None`` (absent or unreadable)."""
    tensors, meta = _paths(key)
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        if info.get("format") != FORMAT or info.get("key") != key:
            return None
        from safetensors.numpy import load_file

        arrays = load_file(str(tensors))
        return arrays["features"], arrays["labels"]
    except (OSError, ValueError, KeyError):
        return None  # a damaged entry is recomputed (and rewritten) by the caller


def save(key: str, features: np.ndarray, labels: np.ndarray, *, model: str,
         weights_sha256: str, data: str, prep: dict[str, Any],
         paths: Sequence[str]) -> Path:
    """Write an entry (tensors, then the JSON that marks it complete); returns the JSON."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors, meta = _paths(key)
    tensors.parent.mkdir(parents=True, exist_ok=True)
    tmp = tensors.with_name(f".{tensors.name}.tmp-{os.getpid()}")
    save_file({"features": np.ascontiguousarray(features, dtype=np.float32),
               "labels": np.ascontiguousarray(labels, dtype=np.int64)}, str(tmp))
    os.replace(tmp, tensors)
    info = {"format": FORMAT, "key": key, "model": model, "weights_sha256": weights_sha256,
            "data_hash": data, "preprocessing": prep, "rows": len(labels),
            "paths": [os.path.abspath(p) for p in paths]}
    tmp = meta.with_name(f".{meta.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, meta)
    return meta


def load_rows(model: str, weights_sha256: str, prep: dict[str, Any]) -> dict[str, Any]:
    """Every cached feature row of ``model`` with these weights and preprocessing, by
    absolute image path (for a later linear_probe of the same model to reuse)."""
    from safetensors.numpy import load_file

    rows: dict[str, Any] = {}
    root = _root()
    if not root.is_dir():
        return rows
    for meta in root.glob("*/*.json"):
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            if (info.get("format"), info.get("model"), info.get("weights_sha256"),
                    info.get("preprocessing")) != (FORMAT, model, weights_sha256,
                                                   json.loads(json.dumps(prep))):
                continue
            feats = load_file(str(meta.with_suffix(".safetensors")))["features"]
        except (OSError, ValueError, KeyError):
            continue
        for path, row in zip(info["paths"], feats, strict=False):
            rows[path] = row
    return rows
