"""Image-folder data for :func:`zoo_core.finetune`: scanning, checks, loading, transforms.

Layouts accepted (one sub-folder per class, found recursively like torchvision's
``ImageFolder``)::

    DIR/<class>/*.png                      split seeded and stratified into train/val
    DIR/train/<class>/..., DIR/val/<class>/...   (``valid``/``validation`` also accepted)

Bad data policy (decided here, documented in the README):

- a missing ``DIR``, a ``DIR`` without images, images lying directly in ``DIR``, a single
  class, a validation class unknown to training, or no validation image at all raise
  :class:`DatasetError` naming the path and what to do;
- an empty class folder is ignored with a :class:`DatasetWarning` (the model gets one
  class fewer, the message says so);
- an unreadable or corrupt image is skipped and counted, with a :class:`BadImageWarning`:
  files whose header cannot be read are dropped while scanning; files that fail later
  while decoding are dropped from their batch (the loader never crashes in a worker,
  see :func:`collate_skip`) and reported at the end of the run;
- the tree is walked by :func:`zoo_core.data._scan.scan_classes` (its module doc has the
  rules): each file counts once, symlink loops are not followed, nothing outside ``DIR``
  is read, FIFOs/sockets/devices are skipped without being opened;
- images of any mode (``L``, ``LA``, ``P`` with or without transparency, ``RGBA``,
  ``CMYK``, 16-bit grey ``I;16``/``I``, float ``F``) are converted to ``RGB``; alpha is
  dropped as torchvision's default loader does.

Preprocessing comes from the model's data config through timm
(``timm.data.resolve_data_config`` + ``timm.data.create_transform``), never hand written.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zoo_core.data._scan import IMG_EXTENSIONS, is_image_name, open_regular, scan_classes
from zoo_core.errors import BadImageWarning, DatasetWarning, InvalidArgumentError

__all__ = [
    "BadImageWarning",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetWarning",
    "FolderData",
    "ImageDataset",
    "collate_skip",
    "embedded_dataset",
    "load_rgb",
    "make_transforms",
    "scan_image_folder",
    "stratified_split",
    "to_rgb",
]

TRAIN_NAMES = ("train",)
VAL_NAMES = ("val", "valid", "validation")
EMBEDDED_PER_CLASS = 10
LAYOUT_HINT = ("expected DIR/<class>/<images> (one sub-folder per class), or "
               "DIR/train/<class>/... and DIR/val/<class>/...")


class DatasetError(InvalidArgumentError):
    """The training data cannot be used as given (the message says what to do)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The data directory does not exist."""




Sample = tuple[str, int]  # (path, class index)


@dataclass(frozen=True)
class FolderData:
    """A scanned image folder: classes, train and val samples, what was skipped."""

    root: str
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    split: str  # how train/val were obtained, in words
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)
    ignored_classes: tuple[str, ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()  # (link, the path it was counted as)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def per_class(self, which: str = "train") -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for _, label in getattr(self, which):
            counts[self.classes[label]] += 1
        return counts


# --------------------------------------------------------------------------- scanning


def stratified_split(labels: Sequence[int] | np.ndarray, val_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``0..len(labels)-1`` into sorted ``(train, val)``.

    Each class gives ``round(n_c * val_fraction)`` images to val (at least one when the
    class has two or more images and ``val_fraction > 0``; a class with one image stays
    in train). Also used by the zoonet plugin for the digits splits.

    >>> tr, va = stratified_split([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], 0.2, seed=0)
    >>> len(tr), len(va)
    (8, 2)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidArgumentError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        pos = pos[rng.permutation(len(pos))]
        n_val = int(round(len(pos) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(pos) >= 2:
            n_val = 1
        if n_val >= len(pos):
            n_val = len(pos) - 1
        val.append(pos[:n_val])
        train.append(pos[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _subdirs(path: Path) -> list[Path]:
    """Non-hidden sub-folders (``train``/``val`` detection; symlinks are judged later, by
    :func:`zoo_core.data._scan.scan_classes`)."""
    try:
        entries = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise DatasetError(f"cannot list {path}: {exc}") from exc
    return [p for p in entries if p.is_dir() and not p.name.startswith(".")]


def _scan_classes(folder: Path, check_images: bool, root: str | os.PathLike[str] | None
                  = None) -> tuple[dict[str, list[str]], list[tuple[str, str]], list[str]]:
    """Class name -> readable image paths, plus skipped files and empty classes, under
    the data ``root`` (default ``folder``); see :mod:`zoo_core.data._scan` for the rules."""
    found = scan_classes(folder if root is None else root, [folder],
                         check_images=check_images)
    return found.parts[0], found.skipped, found.empty[0]


def _fmt_skipped(skipped: Sequence[tuple[str, str]], limit: int = 5) -> str:
    lines = [f"{p} ({why})" for p, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"... and {len(skipped) - limit} more")
    return "; ".join(lines)


def _is_link_skip(why: str) -> bool:
    return why.startswith(("symlink", "broken symlink"))


def warn_scan(root: str | os.PathLike[str], skipped: Sequence[tuple[str, str]],
              duplicates: Sequence[tuple[str, str]] = (), stacklevel: int = 3) -> None:
    """The warnings of a scan: skipped files (:class:`BadImageWarning`), symlinks not
    followed and links to files counted once already (:class:`DatasetWarning`)."""
    links = [s for s in skipped if _is_link_skip(s[1])]
    files = [s for s in skipped if not _is_link_skip(s[1])]
    if files:
        warnings.warn(
            f"skipped {len(files)} unreadable or non-image file(s) under {str(root)!r}: "
            f"{_fmt_skipped(files)}", BadImageWarning, stacklevel=stacklevel)
    if links:
        warnings.warn(
            f"skipped {len(links)} symlink(s) under {str(root)!r} (only files inside the "
            f"data root are read, each once): {_fmt_skipped(links)}", DatasetWarning,
            stacklevel=stacklevel)
    if duplicates:
        shown = "; ".join(f"{a} (counted as {b})" for a, b in duplicates[:5])
        more = f"; ... and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        warnings.warn(
            f"{len(duplicates)} link(s) under {str(root)!r} lead to images or folders "
            f"already counted; each image counts once, under the class folder that really "
            f"holds it: {shown}{more}", DatasetWarning, stacklevel=stacklevel)


def scan_image_folder(root: str | os.PathLike[str], *, val_fraction: float = 0.2,
                      seed: int = 0, check_images: bool = True,
                      warn: bool = True) -> FolderData:
    """Scan an ImageFolder tree into classes and train/val samples (see the module doc).

    ``check_images`` opens every file's header once (cheap: no pixel decoding) so that
    unreadable files are skipped up front. ``warn=False`` silences the warnings (used on
    non-zero ranks of a distributed run, which scan the same tree).
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(
            f"data directory {str(path)!r} does not exist; pass --data DIR with {LAYOUT_HINT} "
            "(or omit --data to use the embedded digits dataset)")
    if not path.is_dir():
        raise DatasetError(f"data path {str(path)!r} is not a directory; {LAYOUT_HINT}")
    subs = {p.name: p for p in _subdirs(path)}
    train_dir = next((subs[n] for n in TRAIN_NAMES if n in subs), None)
    val_dir = next((subs[n] for n in VAL_NAMES if n in subs), None)
    layout_split = train_dir is not None and bool(_subdirs(train_dir))
    top = train_dir if layout_split else path
    with_val = layout_split and val_dir is not None
    found = scan_classes(path, [top, val_dir] if with_val else [top],  # type: ignore[list-item]
                         check_images=check_images)
    per_class, empty = found.parts[0], found.empty[0]
    val_per_class: dict[str, list[str]] = found.parts[1] if with_val else {}
    skipped = found.skipped
    where = str(top)
    if not per_class:
        loose = [f for f in (os.listdir(top) if top.is_dir() else []) if is_image_name(f)]
        if loose and not subs:
            raise DatasetError(
                f"the images in {where!r} lie directly in it, but one sub-folder per class "
                f"is needed: move them to {where}/<class name>/ ({LAYOUT_HINT})")
        bad = f" ({len(skipped)} skipped: {_fmt_skipped(skipped)})" if skipped else ""
        raise DatasetError(
            f"no images found under {where!r}{bad}; {LAYOUT_HINT}; image files end with "
            f"{', '.join(IMG_EXTENSIONS)}")
    if len(per_class) == 1:
        only = next(iter(per_class))
        raise DatasetError(
            f"only one class ({only!r}) has images under {where!r}; a classifier needs at "
            f"least 2 classes: add one sub-folder of images per class ({LAYOUT_HINT})")
    classes = tuple(sorted(per_class))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(val_per_class) - set(classes))
    if unknown:
        raise DatasetError(
            f"validation classes {unknown} under {str(val_dir)!r} have no training images "
            f"under {where!r}; add training images for them or remove them from validation")
    if warn and empty:
        warnings.warn(
            f"ignored {len(empty)} class folder(s) without readable images under {where!r}: "
            f"{', '.join(empty)}; the model gets {len(classes)} classes ({', '.join(classes)})",
            DatasetWarning, stacklevel=3)
    if warn:
        warn_scan(path, skipped, found.duplicates, stacklevel=4)
    all_train = [(p, index[c]) for c in classes for p in per_class[c]]
    if layout_split and val_dir is not None:
        train = all_train
        val = [(p, index[c]) for c in classes for p in val_per_class.get(c, [])]
        how = f"folders {train_dir.name}/ and {val_dir.name}/"  # type: ignore[union-attr]
    else:
        tr, va = stratified_split([lab for _, lab in all_train], val_fraction, seed)
        train = [all_train[i] for i in tr]
        val = [all_train[i] for i in va]
        how = f"seeded stratified split (val_fraction={val_fraction}, seed={seed})"
    if not val:
        raise DatasetError(
            f"no validation images for the data under {str(path)!r} ({how}); add a val/ "
            "folder next to train/, or raise val_fraction (each class needs 2+ images)")
    return FolderData(root=str(path), classes=classes, train=tuple(train), val=tuple(val),
                      split=how, skipped=tuple(skipped), ignored_classes=tuple(empty),
                      duplicates=tuple(found.duplicates))


def embedded_dataset(per_class: int | None = None, *, seed: int = 0,
                     cache: str | os.PathLike[str] | None = None) -> Path:
    """The embedded target task: digits 5-9 as an ImageFolder tree in the zoo_core cache.

    ``per_class`` training images per class (default 10, few-shot); the val folder holds
    20% of all digits 5-9 (about 36 per class) whatever ``per_class`` is. Idempotent.
    """
    from zoo_core.weights._weights import cache_dir
    from zoo_core_plugins.zoonet.digits import export_imagefolder

    n = EMBEDDED_PER_CLASS if per_class is None else int(per_class)
    base = Path(cache) if cache is not None else cache_dir() / "datasets"
    out = base / f"digits5-9-pc{n}-seed{seed}"
    return export_imagefolder(out, per_class=n, seed=seed)


# --------------------------------------------------------------------------- loading


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> ``RGB`` (alpha dropped; 16-bit and float grey rescaled to 8 bits)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        return im if im.mode == "RGB" else im.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() if arr.size else 0.0
        if mode.startswith("I;16") or top > 255:
            arr = arr * (255.0 / 65535.0)
        elif mode == "F" and top <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return im.convert("RGB")


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open, fully decode and convert an image to RGB (raises on a corrupt file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's chatter about palettes, EXIF, ...
        with open_regular(path) as fh, Image.open(fh) as im:
            im.load()
            return to_rgb(im).copy() if im.mode == "RGB" else to_rgb(im)


@dataclass(frozen=True)
class BadItem:
    """What :class:`ImageDataset` returns for an image that failed to decode."""

    index: int
    path: str
    reason: str


class ImageDataset:
    """``(samples, transform)`` -> items ``(tensor, label, index)`` or a :class:`BadItem`.

    A map-style dataset (no torch import needed to define it). Returning a
    :class:`BadItem` instead of raising keeps a corrupt file from killing a DataLoader
    worker; :func:`collate_skip` drops it from the batch and reports it.
    """

    def __init__(self, samples: Sequence[Sample], transform: Any) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [lab for _, lab in self.samples]

    def __getitem__(self, index: int) -> Any:
        path, label = self.samples[index]
        try:
            img = load_rgb(path)
        except Exception as exc:  # corrupt / truncated / vanished file
            return BadItem(int(index), path, f"{type(exc).__name__}: {exc}")
        return self.transform(img), label, int(index)


@dataclass
class Batch:
    x: Any  # tensor or None when every item was bad
    y: Any
    index: Any
    bad: list[BadItem]

    def __len__(self) -> int:
        return 0 if self.y is None else int(self.y.shape[0])


def collate_skip(items: Sequence[Any]) -> Batch:
    """Collate good items, set bad ones aside (``Batch.bad``)."""
    import torch
    from torch.utils.data import default_collate

    good = [it for it in items if not isinstance(it, BadItem)]
    bad = [it for it in items if isinstance(it, BadItem)]
    if not good:
        return Batch(None, None, None, bad)
    x, y, idx = default_collate(good)
    return Batch(x, torch.as_tensor(y, dtype=torch.long), idx, bad)


# --------------------------------------------------------------------------- transforms


def data_config_of(model: Any) -> dict[str, Any]:
    """timm's resolved data config for a zoo_core model (from ``model.zoo.data_config``)."""
    from timm.data import resolve_data_config

    dc = model.zoo.data_config
    pretrained_cfg = {
        "input_size": tuple(dc.input_size),
        "mean": tuple(dc.mean),
        "std": tuple(dc.std),
        "interpolation": dc.interpolation,
        "crop_pct": dc.crop_pct,
    }
    return dict(resolve_data_config(pretrained_cfg=pretrained_cfg))


def make_transforms(model: Any, augment: bool | Mapping[str, Any] = False) -> tuple[Any, Any]:
    """``(train_transform, eval_transform)`` built by ``timm.data.create_transform``.

    Without ``augment`` both are timm's deterministic eval transform (resize, center
    crop, normalise). ``augment=True`` gives timm's training transform with its defaults
    (random resized crop, horizontal flip, colour jitter); a mapping overrides
    ``create_transform`` keywords (for example ``{"hflip": 0.0, "scale": (0.5, 1.0)}``).
    """
    from timm.data import create_transform

    cfg = data_config_of(model)
    chans = int(cfg["input_size"][0])
    if chans not in (1, 3):
        raise InvalidArgumentError(
            f"the model takes {chans}-channel input; zoo_core reads images as RGB (3 "
            "channels) or grayscale (1): feed it your own tensors instead")
    eval_tf = _in_channels(create_transform(**cfg, is_training=False), chans)
    if not augment:
        return eval_tf, eval_tf
    extra = dict(augment) if isinstance(augment, Mapping) else {}
    cfg = {k: v for k, v in cfg.items() if k not in ("crop_pct", "crop_mode")}
    try:
        train_tf = create_transform(**{**cfg, **extra}, is_training=True)
    except TypeError as exc:
        raise InvalidArgumentError(f"bad augment options {extra!r}: {exc}") from exc
    return _in_channels(train_tf, chans), eval_tf


class Grayscale:
    """An RGB image as the single channel a model built with ``in_chans=1`` takes, then
    ``transform`` (module level: DataLoader workers pickle it by reference)."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image: Image.Image) -> Any:
        return self.transform(image.convert("L"))

    def __repr__(self) -> str:
        return f"Grayscale({self.transform!r})"


def _in_channels(transform: Any, chans: int) -> Any:
    return Grayscale(transform) if chans == 1 else transform
