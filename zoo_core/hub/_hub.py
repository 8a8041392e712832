"""``push_to_hub`` and ``zoo push``: a saved model folder, checked, in ONE Hub commit.

The folder format is :mod:`zoo_core.saved._repo_format`; writing it is :mod:`zoo_core.hub._save`;
loading a repo or a local folder back is :mod:`zoo_core.saved._pretrained` (with its sources in
:mod:`zoo_core.saved._sources`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import HubError, WeightsError
from zoo_core.hub._save import model_info, save_model, save_pretrained
from zoo_core.saved._repo_format import (
    CARD_NAME,
    CONFIG_NAME,
    PICKLE_NAMES,
    WEIGHTS_NAME,
    ZOO_KEY,
    check_repo_id,
    check_revision,
    parse_hub_name,
)

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from torch import nn

__all__ = ["add_cli", "build_from_hub", "parse_hub_name", "push_directory", "push_to_hub",
           "save_pretrained"]


def build_from_hub(name: str, num_classes: int | None = None, strategy: str | None = None,
                   **options: Any) -> nn.Module:
    """``build_model("hf-hub:org/name[@revision]", ...)``: kept for callers of the old name."""
    from zoo_core.build._builder import build_model

    return build_model(name, num_classes, strategy, **options)


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    metrics: Mapping[str, Any] | None = None,
    training_data: str | Mapping[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    license: str | None = None,  # noqa: A002
    model_card_extra: str | Mapping[str, Any] | None = None,
) -> str:
    """Save the model (see :func:`save_pretrained`) and push it to ``repo_id`` in ONE commit.

    The repo is created if missing (``private`` applies then); ``revision`` is a branch,
    created from ``main`` if missing. Files whose content did not change are not uploaded
    again. Returns the commit URL (a ``huggingface_hub.CommitInfo``, a ``str`` that also
    has ``.oid`` and ``.pr_url``). The commit is atomic: when it fails, the remote repo is
    left unchanged and :class:`~zoo_core.HubError` says so (the cause is chained).
    """
    check_repo_id(repo_id, allow_no_namespace=True)
    if revision is not None:
        check_revision(revision)
    info = model_info(model)
    from zoo_core.hub._push_guard import push_tmpdir, sweep_push_leftovers

    sweep_push_leftovers()  # copies left by pushes that were killed
    with push_tmpdir() as tmpdir:
        folder = save_model(model, Path(tmpdir) / "model", metrics=metrics,
                       training_data=training_data, label_names=label_names, license=license,
                       model_card_extra=model_card_extra, repo_id=repo_id)
        message = commit_message or f"Upload {info.plugin}/{info.name} ({info.strategy}) " \
                                    "with zoo_core"
        return _push_folder(folder, repo_id, private=private, revision=revision,
                            commit_message=message, token=token, create_pr=create_pr)


def _push_folder(folder: Path, repo_id: str, *, private: bool | None, revision: str | None,
                 commit_message: str, token: str | None, create_pr: bool) -> str:
    from huggingface_hub import HfApi

    from zoo_core import __version__

    api = HfApi(token=token, library_name="zoo_core", library_version=__version__)
    where = repo_id + (f"@{revision}" if revision else "")
    from zoo_core.hub._push_guard import ENV_PUSH_TIMEOUT, push_timeout

    try:
        with push_timeout():
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            repo_id = url.repo_id or repo_id
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as exc:
        raise HubError(
            f"cannot create or reach Hub repo {where!r}: {exc}. Nothing was uploaded; check "
            "the repo id, your token (`hf auth login` or HF_TOKEN) and the network, then "
            "push again"
        ) from exc
    files = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if (folder / n).is_file()]
    seconds = 0.0
    try:
        with push_timeout() as seconds:
            return api.upload_folder(  # type: ignore[no-any-return]
                repo_id=repo_id, folder_path=str(folder), allow_patterns=files,
                revision=revision, commit_message=commit_message, create_pr=create_pr,
            )
    except Exception as exc:
        if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
            raise HubError(
                f"pushing to Hub repo {where!r} timed out: no answer within {seconds:g} s "
                f"({ENV_PUSH_TIMEOUT}, per request and retry). The commit is atomic, but the "
                "server may still apply it after this: look at the repo's history before "
                "pushing again (pushing the same files twice is harmless)") from exc
        raise HubError(
            f"pushing to Hub repo {where!r} failed: {exc}. The push is a single atomic "
            f"commit, so the remote repo was left unchanged ({', '.join(files)} were not "
            "committed; any file data that reached the server is not part of the repo). "
            "Fix the cause (network, token, permissions, server status) and push again: "
            "files already stored are not uploaded twice"
        ) from exc



# ------------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo push DIR REPO_ID [--private] [--revision B] [--message M]``."""
    p = subparsers.add_parser(
        "push", help="push a directory written by save_pretrained to the Hugging Face Hub",
        description="Upload model.safetensors, config.json and README.md of DIR (written "
                    "by zoo_core.save_pretrained) to REPO_ID in one atomic commit.")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("repo_id", metavar="REPO_ID")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing)")
    p.add_argument("--message", "-m", help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.set_defaults(func=_cmd_push)
    return p  # type: ignore[no-any-return]


def _cmd_push(args: Any) -> int:
    result = push_directory(args.directory, args.repo_id, private=args.private or None,
                            revision=args.revision, commit_message=args.message,
                            create_pr=args.create_pr)
    print(getattr(result, "pr_url", None) or str(result))
    return 0


def push_directory(directory: str | os.PathLike[str], repo_id: str, *,
                   private: bool | None = None, revision: str | None = None,
                   commit_message: str | None = None, token: str | None = None,
                   create_pr: bool = False) -> str:
    """Push a directory written by :func:`save_pretrained` (checked first) in one commit."""
    folder = Path(directory).expanduser()
    check_repo_id(repo_id, allow_no_namespace=True)
    if revision is not None:
        check_revision(revision)
    _check_saved_directory(folder)
    message = commit_message or f"Upload {folder.name} with zoo_core"
    return _push_folder(folder, repo_id, private=private, revision=revision,
                        commit_message=message, token=token, create_pr=create_pr)


def _check_saved_directory(folder: Path) -> None:
    from zoo_core.weights._weights import check_safetensors, sha256_file

    if not folder.is_dir():
        raise HubError(f"{folder} is not a directory; pass a directory written by "
                       "zoo_core.save_pretrained")
    dirs = [n for n in (WEIGHTS_NAME, CONFIG_NAME) if (folder / n).is_dir()]
    if dirs:
        raise HubError(
            f"{folder / dirs[0]} is a directory, not a file: a folder written by "
            f"zoo_core.save_pretrained holds the files {WEIGHTS_NAME} and {CONFIG_NAME}. "
            "Save the model again (zoo_core.save_pretrained(model, DIR))")
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME) if not (folder / n).is_file()]
    if missing:
        pickled = [n for n in PICKLE_NAMES if (folder / n).exists()]
        raise HubError(
            f"{folder} has no {' and no '.join(missing)}; it is not a directory written by "
            "zoo_core.save_pretrained (write one with zoo_core.save_pretrained(model, DIR))"
            + (f". It holds pickled weights ({', '.join(pickled)}): convert them with "
               "`zoo convert`" if pickled else ""))
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HubError(f"{folder / CONFIG_NAME} is not valid JSON: {exc}") from exc
    zoo = config.get(ZOO_KEY) if isinstance(config, dict) else None
    timm_like = isinstance(config, dict) and isinstance(config.get("architecture"), str) \
        and isinstance(config.get("pretrained_cfg"), dict)
    if not isinstance(zoo, dict) and not timm_like:
        raise HubError(
            f"{folder / CONFIG_NAME} has neither a {ZOO_KEY!r} key nor timm's "
            "'architecture' + 'pretrained_cfg'; models loaded from the repo would not know "
            "what to build. Write the directory with zoo_core.save_pretrained")
    try:
        check_safetensors(folder / WEIGHTS_NAME)
    except WeightsError as exc:
        raise HubError(f"{folder / WEIGHTS_NAME} is not a valid safetensors file: {exc}") \
            from exc
    pin = zoo.get("weights_sha256") if isinstance(zoo, dict) else None
    if isinstance(pin, str) and sha256_file(folder / WEIGHTS_NAME) != pin:
        raise HubError(
            f"{folder / WEIGHTS_NAME} does not match config.json (zoo_core.weights_sha256 "
            f"{pin}): the weights were changed after save_pretrained; save again")
