"""The local Hub's repo model (tests/hubserver.py): blobs, commits, repos with branches and
tags, the error answer and the JSON answer helper, and the protocol constants.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
UPLOAD_MODES = ("regular", "lfs", "auto")
DEFAULT_NAMESPACE = "user"  # namespace used when create_repo() is called without one
_SHA_RE = re.compile(r"[0-9a-f]{40}")

# huggingface_hub's basic LFS transfer PUTs the file with `data=<file object>`, which httpx2
# deprecates; unavoidable in upload modes "lfs" and "auto", hence for such tests:
# `@pytest.mark.filterwarnings(LFS_PUT_WARNING)`.
LFS_PUT_WARNING = "ignore:Use 'content=<...>' to upload raw:DeprecationWarning:httpx2"

# Like the real Hub, every new repo starts with an "initial commit" holding a .gitattributes.
# In upload mode "auto" its `filter=lfs` patterns decide which files go through LFS.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.bin *.ckpt *.h5 *.msgpack *.npy *.npz *.onnx *.pkl *.pt *.pth "
        "*.safetensors *.tar.gz *.tflite *.zip"
    ).split()
)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("1", "true")


@dataclass(frozen=True)
class Blob:
    """File content in a commit. Regular files are identified by their git blob sha1, LFS files
    by the sha256 of their content (the git blob being the LFS pointer)."""

    data: bytes
    lfs: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @cached_property
    def blob_id(self) -> str:
        """Git object id: of the pointer for LFS files, as git stores it."""
        return _git_oid(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        """What /resolve sends as ETag and preupload as `oid`: the client compares it locally."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass(frozen=True)
class CommitRecord:
    oid: str
    parent: str | None
    title: str
    description: str
    date: str
    files: dict[str, Blob]  # full snapshot of the repo at this commit
    sent: tuple[str, ...]  # paths whose content came with the commit request (file / lfsFile)
    added: tuple[str, ...]  # paths added or modified compared to the parent
    deleted: tuple[str, ...]
    bytes_sent: int  # inline (base64 "file") bytes, decoded; LFS bytes are in HubServer.lfs_uploads


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, CommitRecord]
    branches: dict[str, str]
    tags: dict[str, str]
    lfs_objects: dict[str, bytes]  # sha256 -> content, filled by LFS PUTs

    def resolve(self, revision: str) -> str | None:
        """Branch, tag (also as refs/heads/..., refs/tags/...) or full commit sha -> commit sha."""
        branch = revision.removeprefix("refs/heads/")
        if branch in self.branches:
            return self.branches[branch]
        tag = revision.removeprefix("refs/tags/")
        if tag in self.tags:
            return self.tags[tag]
        if _SHA_RE.fullmatch(revision) and revision in self.commits:
            return revision
        return None


class HubError(Exception):
    """An error answer: status, optional X-Error-Code, JSON body {"error": message, **extra}."""

    def __init__(self, status: int, code: str | None, message: str, headers=None, **extra):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.extra = dict(headers or {}), extra

    def response(self) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self.headers)
        if self.code:
            headers["X-Error-Code"] = self.code
        headers["X-Error-Message"] = self.message
        return _json({"error": self.message, **self.extra}, self.status, headers)


def _json(obj, status: int = 200, headers=None, content_type="application/json"):
    return status, {"Content-Type": content_type, **(headers or {})}, json.dumps(obj).encode()
