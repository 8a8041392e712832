"""Write an ImageFolder tree atomically and idempotently (shared by the dataset exporters).

Every exporter of this plugin (:mod:`.digits`, :mod:`.glyphs`, :mod:`.textures`) writes
``root/<split>/<class>/*.png`` the same way:

- a marker file (JSON) in ``root`` records the export's parameters and counts; a tree whose
  marker matches is left untouched (the call is idempotent);
- an existing non-empty ``root`` without a marker of this exporter is refused (never
  overwrite user data);
- the tree is written into a temporary directory next to ``root`` and renamed into place,
  so ``root`` is never half written; an older export is replaced whole.

numpy and Pillow free; the caller supplies a function that writes the files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def check_split_names(split: str | Sequence[str]) -> tuple[str, ...]:
    """``split`` as a tuple of folder names; raises ValueError on unusable names."""
    names = tuple(str(s) for s in ([split] if isinstance(split, str) else split))
    if not names or len(set(names)) != len(names):
        raise ValueError(f"split must name one or two distinct folders, got {split!r}")
    if any(not s or "/" in s or "\\" in s or s.startswith(".") for s in names):
        raise ValueError(f"bad split folder names {names!r}")
    return names


def read_marker(root: Path, marker_name: str) -> dict | None:
    try:
        return json.loads((root / marker_name).read_text())
    except (OSError, ValueError):
        return None


def export_tree(
    root: str | os.PathLike[str],
    marker_name: str,
    marker: dict,
    write: Callable[[Path], None],
) -> Path:
    """Write a tree with ``write(tmp_dir)`` and move it to ``root`` (see the module doc)."""
    root = Path(root)
    if read_marker(root, marker_name) == marker:
        return root
    if root.exists():
        if not root.is_dir():
            raise FileExistsError(f"{root} exists and is not a directory")
        if any(root.iterdir()) and read_marker(root, marker_name) is None:
            raise FileExistsError(
                f"{root} is not empty and was not written by this exporter "
                f"(no {marker_name}); refusing to overwrite it: choose another folder"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write(tmp)
        (tmp / marker_name).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        _swap_into_place(tmp, root, marker_name, marker)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _swap_into_place(tmp: Path, root: Path, marker_name: str, marker: dict) -> None:
    """Rename the finished ``tmp`` tree to ``root``, replacing an older export."""
    old = None
    if root.exists():
        if read_marker(root, marker_name) == marker:  # a concurrent writer finished first
            return
        old = root.with_name(f".{root.name}.old-{os.getpid()}-{tmp.name[-8:]}")
        if any(root.iterdir()):
            os.replace(root, old)
        else:
            root.rmdir()
    try:
        os.replace(tmp, root)
    except OSError:
        # someone else put a tree there in the meantime; keep it if it is the same export
        if read_marker(root, marker_name) != marker:
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
