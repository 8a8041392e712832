"""What a saved / pushed model folder holds, and the names that point at one.

A folder written by ``save_pretrained`` (or pushed by ``push_to_hub``) holds exactly three
files:

* ``model.safetensors``: the state dict (contiguous, shared tensors cloned, metadata
  ``format=pt``). Never a pickle.
* ``config.json``: timm-compatible (``architecture``, ``num_classes``, ``num_features``,
  ``label_names``, ``pretrained_cfg`` with ``classifier``, ``first_conv``, ``input_size``,
  ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``num_classes``; ``model_args``:
  the keyword arguments the caller built the model with, nothing filled in), with
  zoo_core's own fields under ONE key, ``"zoo_core"``. An architecture that is not timm's
  also gets ``model_type: "zoo_core"``: transformers reads a config with
  ``pretrained_cfg`` and no ``model_type`` as a timm model. Keys sorted, indent 2.
* ``README.md``: a model card with YAML front matter, written afresh every time.

Names: ``hf-hub:org/name[@revision]`` for a Hub repo, ``local-dir:PATH`` (timm's
spelling) or a directory path for a local folder.
"""

from __future__ import annotations

import re

from zoo_core.errors import InvalidArgumentError
from zoo_core.registry._registry import HUB_PREFIX

__all__ = ["CARD_NAME", "CONFIG_FORMAT", "CONFIG_NAME", "DIST_RE", "IDENT_RE", "LOCAL_PREFIX",
           "MODEL_TYPE", "PICKLE_NAMES", "SHA256_RE", "SHA_RE", "WEIGHTS_NAME", "ZOO_KEY",
           "check_repo_id", "check_revision", "parse_hub_name"]

LOCAL_PREFIX = "local-dir:"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.pth", "model.pth", "model.pt")
ZOO_KEY = "zoo_core"
# config.json's model_type for architectures transformers cannot build (not timm's)
MODEL_TYPE = "zoo_core"
CONFIG_FORMAT = 1

_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"{_NAME_PART}/{_NAME_PART}")
_REPO_NAME_ONLY_RE = re.compile(_NAME_PART)
_REV_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_REV_RE = re.compile(rf"{_REV_PART}(?:/{_REV_PART})*")
IDENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
SHA_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")

# ------------------------------------------------------------------------ validation


def check_repo_id(repo_id: object, *, allow_no_namespace: bool = False) -> str:
    """A Hub repo id, checked before it is used in a URL or a cache path."""
    if not isinstance(repo_id, str):
        raise InvalidArgumentError(f"repo id must be a string, got {type(repo_id).__name__}")
    ok = _REPO_RE.fullmatch(repo_id) or (
        allow_no_namespace and _REPO_NAME_ONLY_RE.fullmatch(repo_id)
    )
    if not ok or ".." in repo_id or "--" in repo_id or repo_id.endswith(".git"):
        form = "org/name or name" if allow_no_namespace else "org/name"
        raise InvalidArgumentError(
            f"invalid Hub repo id {repo_id!r}: expected {form} made of letters, digits, "
            "'-', '_' and '.' (no '..', '--', leading/trailing '.'/'-', absolute paths or "
            "extra '/')"
        )
    return repo_id


def check_revision(revision: object) -> str:
    if not isinstance(revision, str):
        raise InvalidArgumentError(
            f"revision must be a string, got {type(revision).__name__}")
    if (not _REV_RE.fullmatch(revision) or ".." in revision or len(revision) > 255
            or revision.endswith((".lock", "."))):
        raise InvalidArgumentError(
            f"invalid revision {revision!r}: expected a branch, tag or commit sha made of "
            "letters, digits, '-', '_', '.' and '/' (no '..', no leading '/', '.' or '-')"
        )
    return revision


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``hf-hub:org/name[@rev]`` -> ``(repo_id, revision)``, validated.

    >>> parse_hub_name("hf-hub:org/model@v1")
    ('org/model', 'v1')
    >>> parse_hub_name("hf-hub:org/../etc")
    Traceback (most recent call last):
    ...
    zoo_core.errors.InvalidArgumentError: invalid Hub repo id 'org/../etc': ...
    """
    if not isinstance(name, str) or not name.startswith(HUB_PREFIX):
        raise InvalidArgumentError(f"expected hf-hub:org/name[@revision], got {name!r}")
    body = name[len(HUB_PREFIX):]
    repo_id, at, revision = body.partition("@")
    check_repo_id(repo_id)
    if at:
        check_revision(revision)
        return repo_id, revision
    return repo_id, None


