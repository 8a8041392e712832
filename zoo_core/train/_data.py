"""The run's data: the embedded task or an image folder, scanned once per process."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core.data._data import FolderData
    from zoo_core.train._dist import _Dist


def load_folder(ctx: _Dist, data: Any, per_class: int | None, val_fraction: float,
                seed: int) -> tuple[FolderData, str]:
    """``(folder, source)``: rank 0 exports the embedded task first (others wait)."""
    from zoo_core.data._data import FolderData, embedded_dataset, scan_image_folder

    if isinstance(data, FolderData):  # already scanned (auto's pilot, --compare)
        return data, data.split
    if data is None:
        if ctx.main:
            embedded_dataset(per_class, seed=0)
        ctx.barrier()
        root = embedded_dataset(per_class, seed=0)
        source = (f"embedded: scikit-learn digits 5-9, {per_class or 10} training images per "
                  "class")
    else:
        if per_class is not None:
            raise InvalidArgumentError("per_class (--per-class) applies to the embedded "
                                       "dataset only (data=None)")
        root = Path(data)
        source = str(root)
    with warnings.catch_warnings():
        if not ctx.main:
            warnings.simplefilter("ignore")
        folder = scan_image_folder(root, val_fraction=val_fraction, seed=seed, warn=ctx.main)
    return folder, source
