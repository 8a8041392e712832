"""``run.json``: what a run was (every hyperparameter, the data, the software), so that
a run folder, its ``metrics.json`` and its model card can be traced and repeated."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo_core.train._utils import _atomic_write_text

RUN_FILE = "run.json"
PACKAGES = ("zoo-core", "torch", "torchvision", "timm", "accelerate", "numpy",
            "safetensors", "huggingface_hub", "scikit-learn")


def data_fingerprint(folder: Any) -> dict[str, Any]:
    """sha256 of the file list: split, label, path relative to the data root and size of
    every image, sorted. A renamed, added, removed or resized file changes it; reading
    the pixels is not needed."""
    root = Path(folder.root)
    lines = []
    for split, items in (("train", folder.train), ("val", folder.val)):
        for path, label in items:
            p = Path(path)
            try:
                rel = p.relative_to(root).as_posix()
            except ValueError:
                rel = p.as_posix()
            try:
                size = p.stat().st_size
            except OSError:
                size = -1
            lines.append(f"{split}\t{label}\t{rel}\t{size}")
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    return {"root": str(root), "files_sha256": digest, "num_files": len(lines),
            "hashed": "split, label, relative path and size of every image"}


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def write_run(out_dir: Path, record: Mapping[str, Any]) -> None:
    _atomic_write_text(out_dir / RUN_FILE, json.dumps(record, indent=2, default=str) + "\n")


def read_run(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def card_section(record: Mapping[str, Any]) -> str:
    """The run record as a model-card section (markdown); no path of this machine."""
    from zoo_core.hub._card import public_command, public_name

    hp = record.get("hyperparameters", {})
    shown = {k: public_name(v) if isinstance(v, str) else v for k, v in hp.items()}
    rows = "\n".join(f"| {k} | {json.dumps(v, default=str)} |" for k, v in sorted(shown.items()))
    data = record.get("data", {})
    versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
    return (
        "## Training run\n\n"
        f"Strategy **{record.get('strategy')}**: {record.get('reason')}\n\n"
        "| hyperparameter | value |\n|---|---|\n" + rows + "\n\n"
        f"Data: {public_name(str(data.get('source')))} "
        f"(file list sha256 `{data.get('files_sha256')}`, "
        f"{data.get('num_files')} files).\n\n"
        f"Software: {versions}.\n\n"
        f"Command: `{public_command(str(record.get('command')))}`\n")


def command_line() -> str:
    """The command that started this process, for the record."""
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("zoo", "__main__.py", "cli.py"):
        argv[0] = "zoo"
    return " ".join(argv)
