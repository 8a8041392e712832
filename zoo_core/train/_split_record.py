"""``split.json``: which images a run trained on and which it validated on.

Written once per run (atomically, when the run starts; a resume keeps it), so that
``zoo eval RUN`` scores the run's own validation split and ``zoo eval RUN --data DIR``
can leave the run's training images out. Format (``"format": 1``)::

    {"format": 1, "root": "/abs/data/root", "source": "<as the run printed it>",
     "split": "<how train/val were obtained>", "classes": ["a", "b"],
     "train": [["a/img1.png", "a"], ...], "val": [["b/img9.png", "b"], ...]}

Paths are POSIX paths relative to ``root``; each entry carries its class name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo_core.train._utils import _atomic_write_text, writing

SPLIT_FILE = "split.json"
SPLIT_FORMAT = 1


def _rel(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.resolve().relative_to(root.resolve()).as_posix()


def write_split(out_dir: Path, folder: Any, source: str, *, fresh: bool) -> None:
    """Record ``folder``'s split in ``out_dir`` (a resumed run keeps the first one)."""
    path = out_dir / SPLIT_FILE
    if not fresh and path.is_file():
        return
    root = Path(folder.root)
    classes = list(folder.classes)
    doc = {"format": SPLIT_FORMAT, "root": str(root.resolve()), "source": source,
           "split": folder.split, "classes": classes,
           "train": [[_rel(p, root), classes[label]] for p, label in folder.train],
           "val": [[_rel(p, root), classes[label]] for p, label in folder.val]}
    with writing(path):
        _atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_split(run_dir: Path) -> dict[str, Any] | None:
    """The run's split record, or None where the folder has none (an older run, a model
    folder). A damaged record is an error naming the file."""
    from zoo_core.errors import InvalidArgumentError

    path = Path(run_dir) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != SPLIT_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {SPLIT_FORMAT}")
        for key in ("train", "val"):
            doc[key] = [(str(rel), str(name)) for rel, name in doc[key]]
        doc["root"] = str(doc["root"])
        doc["classes"] = [str(c) for c in doc["classes"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidArgumentError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); pass --data DIR to "
            "evaluate on a folder instead") from exc
    return doc
