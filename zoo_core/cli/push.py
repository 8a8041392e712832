"""``zoo push DIR REPO_ID``: a ``zoo finetune`` run folder pushes its ``best/`` model, and
the card's placeholder repo name becomes the real one, as ``--push-to-hub`` writes it."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

PLACEHOLDER = "hf-hub:ORG/NAME"  # what save_pretrained writes when no repo is known yet
REPO_PLACEHOLDER = "ORG/NAME"
CARD = "README.md"
WEIGHTS = "model.safetensors"


def resolve_run(directory: str) -> Path:
    """DIR itself when it holds a saved model, else DIR/best (a ``zoo finetune`` run)."""
    folder = Path(directory).expanduser()
    if not (folder / WEIGHTS).is_file() and (folder / "best" / WEIGHTS).is_file():
        return folder / "best"
    return folder


def _cmd_push(args: argparse.Namespace) -> int:
    from zoo_core.hub._hub import _check_saved_directory, push_directory

    folder = resolve_run(args.directory)
    _check_saved_directory(folder)  # errors name the user's folder, not the staged copy
    if folder != Path(args.directory).expanduser():
        print(f"pushing {folder} (the run's best model)")
    card = folder / CARD
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        if REPO_PLACEHOLDER in text:  # push a copy whose card names the real repo
            staged = Path(tmp) / folder.name
            shutil.copytree(folder, staged)
            # hf-hub:ORG/NAME in the zoo_core/timm examples, ORG/NAME in transformers'
            (staged / CARD).write_text(text.replace(REPO_PLACEHOLDER, args.repo_id),
                                       encoding="utf-8")
            folder = staged
        result = push_directory(folder, args.repo_id, private=args.private or None,
                                revision=args.revision, commit_message=args.message,
                                create_pr=args.create_pr)
    print(getattr(result, "pr_url", None) or str(result))
    return 0


def wrap(parser: Any) -> None:
    """Make the ``push`` subcommand take run folders and fill the card's repo name."""
    parser.set_defaults(func=_cmd_push)
    parser.description = (f"{parser.description} DIR may be a `zoo finetune` run folder "
                          "(its best/ is pushed); the card's example names REPO_ID.")
