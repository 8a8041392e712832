"""Where a saved model comes from: a Hub repo (``hf-hub:org/name[@rev]``) or a local folder
(``local-dir:PATH``, or a path to a folder). Both give the same thing, a :class:`Source`:
its ``config.json`` on disk and where its ``model.safetensors`` is;
:mod:`zoo_core.saved._pretrained` builds the model from that, the same way for both.

A folder written by ``zoo finetune`` (``RUN/``) is read from its ``RUN/best``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.errors import HubError, InvalidArgumentError, WeightsError
from zoo_core.registry._registry import HUB_PREFIX
from zoo_core.saved._repo_format import (
    CONFIG_NAME,
    LOCAL_PREFIX,
    PICKLE_NAMES,
    SHA_RE,
    WEIGHTS_NAME,
    parse_hub_name,
)

__all__ = ["Source", "is_saved_model_name", "open_source", "prepare_weights"]

log = logging.getLogger("zoo_core.hub")


@dataclass(frozen=True)
class Source:
    """A saved model, located: ``config_path`` is on disk, ``weights`` is a weights source."""

    name: str  # how messages name it: hf-hub:org/name[@rev] or local-dir:/abs/path
    kind: str  # "hub" | "local-dir"
    config_path: Path
    weights: str  # hf-hub:org/name@<commit> or a local file path
    extra: dict[str, Any] = field(default_factory=dict)  # lands in model.zoo.extra
    repo_id: str | None = None
    revision: str | None = None  # the commit (or the asked revision) of the Hub files


def is_saved_model_name(name: object) -> bool:
    """Whether ``build_model(name)`` means a Hub repo or a local folder, not a registry name.

    >>> is_saved_model_name("hf-hub:org/name"), is_saved_model_name("local-dir:run/best")
    (True, True)
    >>> is_saved_model_name("resnet18"), is_saved_model_name("timm/resnet18")
    (False, False)
    >>> is_saved_model_name("runs/x/best"), is_saved_model_name("out/")
    (True, True)
    """
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str):
        return False
    if name.startswith((HUB_PREFIX, LOCAL_PREFIX)):
        return True
    if name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.sep in name.replace("/", ""):
        return True
    if name.endswith("/") or name.count("/") > 1:  # registry names have one '/' at most
        return True
    # plugin/model is a registry name, unless such a folder exists here
    return "/" in name and os.path.isdir(name)


def open_source(name: str | os.PathLike[str]) -> Source:
    """Locate the saved model ``name``: its config.json is local when this returns."""
    if isinstance(name, str) and name.startswith(HUB_PREFIX):
        repo_id, revision = parse_hub_name(name)
        config_path = _download_config(repo_id, revision, name)
        commit = _commit_of(config_path)
        at = commit or revision
        return Source(name=name, kind="hub", config_path=config_path,
                      weights=f"{HUB_PREFIX}{repo_id}" + (f"@{at}" if at else ""),
                      extra={"hub": {"repo_id": repo_id, "revision": revision,
                                     "commit": commit}},
                      repo_id=repo_id, revision=at)
    return _open_folder(name)


def prepare_weights(source: Source, pin: str | None) -> Path:
    """Make sure ``model.safetensors`` is there and is the file config.json was written for
    (turning a missing, pickled or foreign file into a clear message early); its path."""
    if source.kind == "hub":
        assert source.repo_id is not None
        return _fetch_hub_weights(source.repo_id, source.revision, source.name, pin)
    path = Path(source.weights)
    if path.is_dir():
        raise HubError(
            f"cannot load {source.name}: its {WEIGHTS_NAME} is a directory, not a file. A "
            f"saved model's {WEIGHTS_NAME} is the safetensors file save_pretrained writes: "
            "put that file there (or save the model again)")
    if not path.is_file():
        raise HubError(f"{source.name} has no {WEIGHTS_NAME}" + _pickle_note(path.parent))
    if pin is not None:
        from zoo_core.weights._weights import sha256_file

        _check_pin(sha256_file(path), pin, source.name)
    return path


# ------------------------------------------------------------------------- local folder


def _open_folder(name: str | os.PathLike[str]) -> Source:
    text = os.fspath(name)
    if not isinstance(text, str):
        raise InvalidArgumentError(f"a model folder must be a str path, got {text!r}")
    raw = text[len(LOCAL_PREFIX):] if text.startswith(LOCAL_PREFIX) else text
    if not raw.strip() or "\x00" in raw:
        raise InvalidArgumentError(
            f"{text!r} names no folder; write local-dir:PATH with the folder that "
            "save_pretrained or `zoo finetune` (RUN/best) wrote")
    folder = Path(raw).expanduser().absolute()
    shown = f"{LOCAL_PREFIX}{folder}"
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise HubError(
            f"cannot load {shown}: {folder} {what}. Pass a folder written by "
            "zoo_core.save_pretrained or by `zoo finetune` (its RUN/best), or a registered "
            "model name (see `zoo list`)")
    if not (folder / CONFIG_NAME).is_file() and (folder / "best" / CONFIG_NAME).is_file():
        log.info("%s is a zoo finetune run: loading its best/ model", folder)
        folder = folder / "best"
        shown = f"{LOCAL_PREFIX}{folder}"
    if not (folder / CONFIG_NAME).is_file():
        raise HubError(
            f"cannot load {shown}: it has no {CONFIG_NAME}, so it is not a folder written by "
            "zoo_core.save_pretrained or `zoo finetune` (RUN/best)" + _pickle_note(folder))
    return Source(name=shown, kind="local-dir", config_path=folder / CONFIG_NAME,
                  weights=str(folder / WEIGHTS_NAME), extra={"local_dir": str(folder)})


def _pickle_note(folder: Path) -> str:
    pickled = [n for n in PICKLE_NAMES if (folder / n).exists()]
    if not pickled:
        return ""
    return (f"; it only has pickled weights ({', '.join(pickled)}). zoo_core never unpickles "
            "a checkpoint: convert it (`zoo convert pytorch_model.bin model.safetensors`)")


def _check_pin(digest: str, pin: str, name: str) -> None:
    if digest != pin:
        raise HubError(
            f"{WEIGHTS_NAME} of {name} (sha256 {digest}) is not the file its config.json "
            f"was written for (zoo_core.weights_sha256 {pin}): the files do not belong "
            "together. Save the model again (zoo_core.save_pretrained)")


# -------------------------------------------------------------------------------- Hub


def _hub_errors() -> Any:
    from huggingface_hub import errors

    return errors


def _download_config(repo_id: str, revision: str | None, name: str) -> Path:
    import huggingface_hub
    import huggingface_hub.constants  # not loaded by `import huggingface_hub`

    from zoo_core import __version__
    from zoo_core.weights._offline import offline_error, unreachable

    e = _hub_errors()
    offline = unreachable(huggingface_hub.constants.ENDPOINT)
    try:
        return Path(huggingface_hub.hf_hub_download(
            repo_id, CONFIG_NAME, revision=revision, library_name="zoo_core",
            library_version=__version__, local_files_only=bool(offline)))
    except e.RepositoryNotFoundError as exc:
        raise HubError(f"cannot load {name}: repository {repo_id!r} not found (or private: "
                       "log in with `hf auth login` or set HF_TOKEN)") from exc
    except e.RevisionNotFoundError as exc:
        raise HubError(f"cannot load {name}: revision {revision!r} not found in {repo_id!r}; "
                       "check the branch, tag or commit sha") from exc
    except (e.LocalEntryNotFoundError, e.OfflineModeIsEnabled) as exc:
        if offline:
            raise HubError(f"cannot load {name}: "
                           + offline_error("its config.json", offline, hub=True)) from exc
        raise HubError(
            f"cannot load {name}: its config.json is not in the local Hugging Face cache and "
            "cannot be downloaded (offline: HF_HUB_OFFLINE=1, or the Hub is unreachable). "
            "Load it once with network access to cache it") from exc
    except e.EntryNotFoundError as exc:
        raise HubError(f"cannot load {name}: the repo has no config.json, so it is not a "
                       "model pushed by zoo_core or timm") from exc
    except e.HFValidationError as exc:
        raise InvalidArgumentError(f"invalid Hub name {name!r}: {exc}") from exc
    except (e.HfHubHTTPError, OSError) as exc:
        raise HubError(f"cannot download config.json of {name}: {exc}") from exc


def _commit_of(path: Path) -> str | None:
    """The commit the cached file belongs to (``.../snapshots/<sha>/config.json``)."""
    parent = path.parent
    if parent.parent.name == "snapshots" and SHA_RE.fullmatch(parent.name):
        return parent.name
    return None




def _fetch_hub_weights(repo_id: str, revision: str | None, name: str,
                       pin: str | None) -> Path:
    """Download model.safetensors now, to turn a missing or foreign file into a clear
    message (``build_from_spec`` then finds it in the cache and checks it again)."""
    from zoo_core.weights import _weights

    e = _hub_errors()
    source = f"{HUB_PREFIX}{repo_id}"
    try:
        path = _weights.fetch_weights(source, revision=revision, filename=WEIGHTS_NAME,
                                      progress=False)
    except WeightsError as exc:
        cause = exc.__cause__
        if isinstance(cause, e.EntryNotFoundError) and not isinstance(
                cause, e.LocalEntryNotFoundError):
            pickled = _pickled_files(repo_id, revision)
            raise HubError(
                f"{name} has no {WEIGHTS_NAME}"
                + (f"; it only has pickled weights ({', '.join(pickled)})" if pickled else "")
                + ". zoo_core loads safetensors only and never unpickles a checkpoint: "
                "convert it (`zoo convert pytorch_model.bin model.safetensors`) and push "
                "model.safetensors to the repo") from exc
        raise
    if pin is not None:
        digest = getattr(_weights, "_file_digest", _weights.sha256_file)(path)
        if digest != pin:
            raise HubError(
                f"{WEIGHTS_NAME} of {name} (sha256 {digest}) is not the file its config.json "
                f"was written for (zoo_core.weights_sha256 {pin}): the repo's files do not "
                "belong together. Push the model again with zoo_core.push_to_hub, or pin a "
                "revision where they match (hf-hub:org/name@<commit>)")
    return Path(path)


def _pickled_files(repo_id: str, revision: str | None) -> list[str]:
    import huggingface_hub

    found = []
    for filename in PICKLE_NAMES:
        with contextlib.suppress(Exception):
            if huggingface_hub.file_exists(repo_id, filename, revision=revision):
                found.append(filename)
    return found
