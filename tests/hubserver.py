"""A local, in-memory Hugging Face Hub for offline tests.

`HubServer` speaks the part of the Hub HTTP protocol that the real `huggingface_hub` client
(checked with 2.4.0) uses for pushing and pulling models: repo creation, preupload, NDJSON
commits, the LFS batch API, branches, tags, repo info, tree listings and `/resolve` downloads.
It runs a `ThreadingHTTPServer` on 127.0.0.1 in a daemon thread; repos live in memory as
git-like commits (full file snapshots, 40-hex ids), so tests can inspect exactly what a push did.

Pytest fixtures (re-exported by the conftest):

- `hub_server` (session): one started `HubServer`.
- `hub_env` (function): points the already-imported client at `hub_server` with a fresh
  HF_HOME, and returns a `HubEnv` with helpers (`repo_id()`, `offline()`, `set_upload_mode()`,
  `use_server()`, `fast_retries()`). Everything is restored afterwards.

Protocol notes: /work/shared/hub-protocol.md.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

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


class HubServer:
    """In-memory Hub. `start()` returns self; `endpoint` is http://127.0.0.1:PORT.

    Knobs: `upload_mode` ("regular": files travel base64 in the commit; "lfs": every non-empty file
    goes through the LFS batch API + PUT, which needs HF_HUB_DISABLE_XET=1 on the client; "auto":
    like the Hub, .gitattributes LFS patterns or binary content -> LFS), `fail_next(route)` and
    `fail_next_commit`. Introspection: `commits()`, `files()`, `head()`, `request_counts`
    (Counter keyed "METHOD route", e.g. "POST commit", "GET resolve"), `request_log`,
    `lfs_uploads`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.upload_mode = "regular"
        self.request_counts: Counter[str] = Counter()
        self.request_log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.lfs_uploads: list[tuple[str, str, int]] = []  # (repo_id, sha256, size)
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("HubServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubServer:
        if self._httpd is None:
            # After a stop(), restart on the same port so that the endpoint stays valid.
            self._httpd = _HTTPServer((self.host, self.port), self)
            self.port = self._httpd.server_address[1]
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            # Also drop keep-alive connections: their handler threads would otherwise keep
            # answering the client's pooled connections after the "server is gone".
            self._httpd.close_connections()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all repos, counters and pending failures (the server keeps running)."""
        with self._lock:
            self._repos.clear()
            self._failures.clear()
            self.reset_counters()

    def reset_counters(self) -> None:
        with self._lock:
            self.request_counts.clear()
            self.request_log.clear()
            self.lfs_uploads.clear()

    # -- failure injection ---------------------------------------------------------------------

    def fail_next(self, route: str, times: int = 1, status: int = 500) -> None:
        """Answer the next `times` requests to `route` ("METHOD name" as in `request_counts`)
        with `status`, after reading their body and without touching any repo."""
        with self._lock:
            self._failures[route] = [status] * times

    @property
    def fail_next_commit(self) -> int:
        """Pending commit failures. Set True/False or a count. Note: upload_folder() with hf_xet
        installed retries a failed commit up to 5 times (see HubEnv.fast_retries)."""
        return len(self._failures.get("POST commit", []))

    @fail_next_commit.setter
    def fail_next_commit(self, value: bool | int) -> None:
        self.fail_next("POST commit", times=int(value))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    # -- repo state (also usable directly by tests) --------------------------------------------

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> _Repo:
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(409, None, f"You already created this {repo_type} repo",
                               url=self._repo_url(repo_type, repo_id))
            repo = _Repo(repo_type, repo_id, private, _now(), {}, {}, {}, {})
            gitattributes = {".gitattributes": Blob(DEFAULT_GITATTRIBUTES.encode())}
            first = self._record_commit(repo, None, "initial commit", "", gitattributes,
                                        sent=(), deleted=(), bytes_sent=0)
            repo.branches["main"] = first.oid
            self._repos[(repo_type, repo_id)] = repo
            return repo

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (repo_type, repo_id) in self._repos

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Commit sha that `revision` (branch, tag or sha) points to."""
        with self._lock:
            return self._commit_at(self._repo(repo_type, repo_id), revision).oid

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model"):
        """History of `revision`, oldest first (starting with the "initial commit")."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit, history = self._commit_at(repo, revision), []
            while commit is not None:
                history.append(commit)
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return history[::-1]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model"):
        """{path: content} at `revision`: compare before/after to check a push changed nothing."""
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), revision)
            return {path: blob.data for path, blob in commit.files.items()}

    # -- internals -----------------------------------------------------------------------------

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _commit_at(self, repo: _Repo, revision: str) -> CommitRecord:
        oid = repo.resolve(revision)
        if oid is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo.commits[oid]

    def _record_commit(self, repo, parent, title, description, files, *, sent, deleted, bytes_sent):
        previous = repo.commits[parent].files if parent else {}
        # Uniqueness comes from the counter; the content part only makes ids look like git's.
        seed = json.dumps([parent, title, sorted((p, b.blob_id) for p, b in files.items()),
                           next(self._ids)])
        commit = CommitRecord(
            oid=hashlib.sha1(seed.encode()).hexdigest(), parent=parent, title=title,
            description=description, date=_now(), files=files, sent=tuple(sent),
            added=tuple(p for p in sorted(files) if previous.get(p) != files[p]),
            deleted=tuple(deleted), bytes_sent=bytes_sent,
        )
        repo.commits[commit.oid] = commit
        return commit

    def _upload_mode_for(self, commit: CommitRecord, path: str, sample: bytes) -> str:
        if self.upload_mode not in UPLOAD_MODES:
            raise ValueError(f"upload_mode must be one of {UPLOAD_MODES}, not {self.upload_mode!r}")
        if self.upload_mode != "auto":
            return self.upload_mode
        attributes = commit.files.get(".gitattributes", Blob(b"")).data.decode()
        patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        name = path if any("/" in p for p in patterns) else path.rsplit("/", 1)[-1]
        tracked = any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)
        return "lfs" if tracked or b"\0" in sample else "regular"

    def _tree_entries(self, files: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
        dirs = {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}
        if base and base not in dirs:
            if base in files:
                return [self._entry(base, files)]
            raise HubError(404, "EntryNotFound", f"{base} does not exist")
        prefix = f"{base}/" if base else ""
        return [
            self._entry(path, files)
            for path in sorted(dirs | files.keys())
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])
        ]

    @staticmethod
    def _entry(path: str, files: dict[str, Blob]) -> dict:
        blob = files.get(path)
        if blob is None:  # a directory: its oid just needs to change when its content does
            content = sorted((p, b.blob_id) for p, b in files.items() if p.startswith(f"{path}/"))
            oid = hashlib.sha1(json.dumps(content).encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": path}
        entry = {"type": "file", "oid": blob.blob_id, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        return entry

    # -- routing -------------------------------------------------------------------------------

    def _route(self, method: str, segments: list[str]):
        """Raw (still quoted) path segments -> (route name, handler, repo_type, repo_id, rest)."""
        if segments[:1] == ["api"]:
            rest = segments[1:]
            simple = {
                ("POST", "repos/create"): ("create_repo", self._h_create_repo),
                ("POST", "validate-yaml"): ("validate_yaml", self._h_validate_yaml),
            }
            if (method, "/".join(rest)) in simple:
                return (*simple[(method, "/".join(rest))], None, None, [])
            if method == "PUT" and len(rest) == 5 and rest[0] == "__lfs" and rest[1] in REPO_TYPES:
                return ("lfs_upload", self._h_lfs_upload, REPO_TYPES[rest[1]],
                        f"{unquote(rest[2])}/{unquote(rest[3])}", rest[4:])
            if len(rest) >= 3 and rest[0] in REPO_TYPES:
                action = rest[3] if len(rest) > 3 else ""
                routes = {
                    ("GET", ""): ("repo_info", self._h_repo_info),
                    ("GET", "revision"): ("repo_info", self._h_repo_info),
                    ("POST", "preupload"): ("preupload", self._h_preupload),
                    ("POST", "commit"): ("commit", self._h_commit),
                    ("GET", "tree"): ("tree", self._h_tree),
                    ("POST", "branch"): ("branch", self._h_create_branch),
                    ("POST", "tag"): ("tag", self._h_create_tag),
                    ("GET", "refs"): ("refs", self._h_refs),
                    ("GET", "commits"): ("commits", self._h_commits),
                }
                if (method, action) in routes:
                    return (*routes[(method, action)], REPO_TYPES[rest[0]],
                            f"{unquote(rest[1])}/{unquote(rest[2])}", rest[4:])
            if len(rest) >= 2 and rest[0] in REPO_TYPES:  # e.g. a namespace-less id ("gpt2")
                raise HubError(404, "RepoNotFound", f"Repository {unquote(rest[1])} not found")
        else:
            repo_type = "model"
            if segments[:1] in (["datasets"], ["spaces"]):
                repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
            if (method == "POST" and len(segments) == 6 and segments[1].endswith(".git")
                    and segments[2:] == ["info", "lfs", "objects", "batch"]):
                repo_id = f"{unquote(segments[0])}/{unquote(segments[1])[:-4]}"
                return "lfs_batch", self._h_lfs_batch, repo_type, repo_id, []
            if method in ("GET", "HEAD") and len(segments) >= 5 and segments[2] == "resolve":
                repo_id = f"{unquote(segments[0])}/{unquote(segments[1])}"
                return "resolve", self._h_resolve, repo_type, repo_id, segments[3:]
            if len(segments) >= 4 and segments[1] == "resolve":
                raise HubError(404, "RepoNotFound", f"Repository {unquote(segments[0])} not found")
        raise HubError(404, None, f"No such endpoint: {method} /{'/'.join(segments)}")

    # -- endpoint handlers: (request handler, body, repo_type, repo_id, rest) -> response ------

    def _h_create_repo(self, req, body, *_):
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.create_repo(repo_id, repo_type, private)
        return _json({"url": self._repo_url(repo_type, repo_id), "name": repo_id})

    def _h_validate_yaml(self, req, body, *_):
        return _json({"errors": [], "warnings": []})

    def _h_repo_info(self, req, body, repo_type, repo_id, rest):
        revision = unquote(rest[0]) if rest else "main"
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if _flag(req.query, "blobs"):
                sibling.update(size=blob.size, blobId=blob.blob_id)
                if blob.lfs:
                    sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256,
                                      "pointerSize": len(blob.pointer)}
            siblings.append(sibling)
        return _json({
            "id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid,
            "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
            "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings,
        })

    def _h_preupload(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), unquote(rest[0]))
        answers = []
        for file in json.loads(body)["files"]:
            existing = commit.files.get(file["path"])
            sample = base64.b64decode(file.get("sample", ""))
            answers.append({
                "path": file["path"],
                "uploadMode": self._upload_mode_for(commit, file["path"], sample),
                "shouldIgnore": False,  # the client crashes without this key
                # The client skips files whose local oid equals this one (sha256 for LFS files).
                "oid": existing.etag if existing else None,
            })
        return _json({"files": answers, "commitOid": commit.oid})

    def _h_commit(self, req, body, repo_type, repo_id, rest):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, None, "The commit payload must start with a header line")
        if _flag(req.query, "create_pr"):
            raise HubError(400, None, "create_pr is not supported by the test hub")
        header, branch = lines[0]["value"], unquote(rest[0])
        with self._lock:  # everything below is checked on a copy, then swapped in: all or nothing
            repo = self._repo(repo_type, repo_id)
            if branch not in repo.branches:
                if repo.resolve(branch) is None:
                    raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                raise HubError(400, None, f"Can only commit to a branch, not {branch}")
            parent = repo.branches[branch]
            if header.get("parentCommit") not in (None, parent):
                raise HubError(412, None, "A commit has happened since. Please refresh.")
            files, sent, deleted, bytes_sent = dict(repo.commits[parent].files), [], [], 0
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                path = value.get("path", "")
                if key == "file":
                    content = value["content"]
                    data = (base64.b64decode(content) if value.get("encoding") == "base64"
                            else content.encode())
                    files[path], bytes_sent = Blob(data), bytes_sent + len(data)
                    sent.append(path)
                elif key == "lfsFile":
                    data = repo.lfs_objects.get(value["oid"])
                    if data is None:
                        raise HubError(422, None, f"LFS object {value['oid']} was never uploaded")
                    files[path] = Blob(data, lfs=True)
                    sent.append(path)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
                    deleted.append(path)
                elif key == "deletedFolder":
                    victims = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                    if not victims:
                        raise HubError(404, "EntryNotFound", "No folder with this name")
                    for victim in victims:
                        del files[victim]
                    deleted.extend(victims)
                else:
                    raise HubError(400, None, f"Unknown commit operation {key!r}")
            commit = self._record_commit(
                repo, parent, header.get("summary", ""), header.get("description", ""), files,
                sent=sent, deleted=deleted, bytes_sent=bytes_sent,
            )
            repo.branches[branch] = commit.oid
        return _json({"success": True, "commitOid": commit.oid, "hookOutput": "",
                      "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{commit.oid}"})

    def _h_tree(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), unquote(rest[0]))
        base = unquote("/".join(rest[1:])).strip("/")
        return _json(self._tree_entries(commit.files, base, _flag(req.query, "recursive")))

    def _h_create_branch(self, req, body, repo_type, repo_id, rest):
        branch = unquote(rest[0])
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if branch in repo.branches:
                raise HubError(409, None, f"Branch {branch} already exists")
            repo.branches[branch] = self._commit_at(repo, start).oid
        return _json({})

    def _h_create_tag(self, req, body, repo_type, repo_id, rest):
        tag = json.loads(body)["tag"]
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            target = self._commit_at(repo, unquote(rest[0])).oid
            if tag in repo.tags:
                raise HubError(409, None, f"Tag {tag} already exists")
            repo.tags[tag] = target
        return _json({})

    def _h_refs(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return _json({
                "branches": [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                             for name, oid in sorted(repo.branches.items())],
                "tags": [{"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid}
                         for name, oid in sorted(repo.tags.items())],
                "converts": [], "pullRequests": [],
            })

    def _h_commits(self, req, body, repo_type, repo_id, rest):
        history = self.commits(repo_id, unquote(rest[0]) if rest else "main", repo_type)
        return _json([
            {"id": c.oid, "title": c.title, "message": c.description, "date": c.date,
             "authors": [{"user": DEFAULT_NAMESPACE, "avatar": None}]}
            for c in reversed(history)
        ])

    def _h_lfs_batch(self, req, body, repo_type, repo_id, rest):
        payload = json.loads(body)
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            objects = []
            for obj in payload.get("objects", []):
                answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                # No "actions" means "already stored": the client then skips the PUT.
                if obj["oid"] not in repo.lfs_objects:
                    href = (f"{self.endpoint}/api/__lfs/{repo_type}s/{repo_id}/{obj['oid']}")
                    answer["actions"] = {"upload": {"href": href}}
                objects.append(answer)
        return _json({"transfer": "basic", "objects": objects}, 200, None,
                     content_type="application/vnd.git-lfs+json")

    def _h_lfs_upload(self, req, body, repo_type, repo_id, rest):
        oid = rest[0]
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, None, f"Uploaded content does not match sha256 {oid}")
        with self._lock:
            self._repo(repo_type, repo_id).lfs_objects[oid] = body
            self.lfs_uploads.append((repo_id, oid, len(body)))
        return 200, {}, b""

    def _h_resolve(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), unquote(rest[0]))
        path = unquote("/".join(rest[1:]))
        blob = commit.files.get(path)
        if blob is None:  # X-Repo-Commit lets the client cache the file's absence
            raise HubError(404, "EntryNotFound", f"{path} does not exist",
                           {"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"',
                   "Content-Type": "application/octet-stream"}
        return 200, headers, blob.data

    def _handle(self, req: _Handler) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(req.path)
        req.query = parse_qs(split.query)
        body = req.read_body()  # before anything else, so a failure is always "after upload"
        segments = split.path.split("/")[1:]
        route, handler, repo_type, repo_id, rest = self._route(req.command, segments)
        name = f"{req.command} {route}"
        with self._lock:
            self.request_counts[name] += 1
            pending = self._failures.get(name)
            status = pending.pop() if pending else None
        if status is not None:
            raise HubError(status, None, f"Injected failure for {name}")
        return handler(req, body, repo_type, repo_id, rest)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, hub: HubServer):
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every answer has a length
    server: _HTTPServer
    query: dict[str, list[str]]

    def log_message(self, format, *args) -> None:
        pass  # keep test output clean: HubServer.request_log has the same information

    def read_body(self) -> bytes:
        # httpx2 always sends Content-Length: no chunked request bodies to decode.
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        hub = self.server.hub
        try:
            status, headers, payload = hub._handle(self)
        except HubError as error:
            status, headers, payload = error.response()
        except Exception as error:  # a server bug: make it visible to the client, not a hang
            status, headers, payload = _json({"error": f"test hub crashed: {error!r}"}, 500)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        with hub._lock:
            hub.request_log.append((self.command, self.path, status))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch


# ---------------------------------------------------------------------------------------------
# pytest fixtures


_REPO_NUMBERS = itertools.count(1)


class HubEnv:
    """What `hub_env` yields: the client is configured for `server` with a fresh HF_HOME."""

    token = "hf_dummy"

    def __init__(self, server: HubServer, monkeypatch: pytest.MonkeyPatch, home: Path):
        self.server, self.home, self._mp = server, home, monkeypatch
        self.cache_dir = home / "hub"  # HF_HUB_CACHE
        self._originals: dict[str, object] = {}
        self._modules_before = set(sys.modules)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    def repo_id(self, name: str = "model", namespace: str = "zoo-test") -> str:
        """A repo id unique for the whole test session (the session server keeps all repos)."""
        return f"{namespace}/{name}-{next(_REPO_NUMBERS)}"

    def offline(self, enabled: bool = True) -> None:
        """HF_HUB_OFFLINE after import: `is_offline_mode()` reads `constants.HF_HUB_OFFLINE`."""
        self._mp.setenv("HF_HUB_OFFLINE", "1" if enabled else "0")
        self._set_constants(HF_HUB_OFFLINE=enabled)

    def disable_xet(self, disabled: bool = True) -> None:
        # hf_xet is chosen by the client, never negotiated: any "lfs" file would go to a Xet
        # storage this server does not have, unless Xet is disabled.
        self._mp.setenv("HF_HUB_DISABLE_XET", "1" if disabled else "0")
        self._set_constants(HF_HUB_DISABLE_XET=disabled)

    def set_upload_mode(self, mode: str) -> None:
        """Server upload mode ("regular", "lfs", "auto"); Xet is disabled unless "regular"."""
        if mode not in UPLOAD_MODES:
            raise ValueError(f"mode must be one of {UPLOAD_MODES}")
        self.server.upload_mode = mode
        self.disable_xet(mode != "regular")

    def fast_retries(self) -> None:
        """Make the client's HTTP backoff retry without sleeping (1+2+4+8+8 s otherwise)."""
        from huggingface_hub.utils import _http

        self._mp.setattr(_http, "time", SimpleNamespace(sleep=lambda seconds: None))

    def use_server(self, server: HubServer) -> None:
        """Point the client at another (e.g. a private, stoppable) server."""
        from huggingface_hub import constants, hf_api

        self.server = server
        endpoint = server.endpoint
        self._mp.setenv("HF_ENDPOINT", endpoint)
        self._set_constants(
            ENDPOINT=endpoint,
            HUGGINGFACE_CO_URL_TEMPLATE=endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            HF_URL_HOSTS=frozenset(constants.HF_URL_HOSTS | {server.host}),
        )
        # Module-level functions (model_info, create_repo, ...) are bound methods of an HfApi
        # created at import, which copied the endpoint.
        self._mp.setattr(hf_api.api, "endpoint", endpoint)

    def _set_constants(self, **values) -> None:
        """Patch huggingface_hub.constants and the copies made by `from ..constants import X`."""
        from huggingface_hub import constants

        modules = [module for name, module in list(sys.modules.items())
                   if name.split(".")[0] == "huggingface_hub" and module is not None]
        for name, value in values.items():
            if not hasattr(constants, name):  # tolerate other huggingface_hub versions
                continue
            original = getattr(constants, name)
            self._originals.setdefault(name, original)
            for module in modules:
                namespace = vars(module)
                if name in namespace and (module is constants or namespace[name] == original):
                    self._mp.setattr(module, name, value)

    def _activate(self) -> None:
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE",
                    "HUGGINGFACE_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH",
                    "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE",
                    "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_XET", "HUGGINGFACE_CO_STAGING"):
            self._mp.delenv(var, raising=False)
        for var, value in {
            "HF_HOME": str(home), "HF_TOKEN": self.token, "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }.items():
            self._mp.setenv(var, value)
        hub, assets = str(home / "hub"), str(home / "assets")
        self._set_constants(
            HF_HOME=str(home), default_cache_path=hub, HF_HUB_CACHE=hub,
            HUGGINGFACE_HUB_CACHE=hub, default_assets_cache_path=assets,
            HF_ASSETS_CACHE=assets, HUGGINGFACE_ASSETS_CACHE=assets,
            default_xet_cache_path=str(home / "xet"), HF_XET_CACHE=str(home / "xet"),
            HF_TOKEN_PATH=str(home / "token"), HF_STORED_TOKENS_PATH=str(home / "stored_tokens"),
            CHECK_FOR_UPDATE_DONE_PATH=str(home / ".check_for_update_done"),
            CHECK_FOR_SKILL_UPDATE_DONE_PATH=str(home / ".check_for_skill_update_done"),
            AGENT_HARNESSES_PATH=str(home / ".agent_harnesses.json"),
            HF_HUB_OFFLINE=False, HF_HUB_DISABLE_XET=False, HF_HUB_DISABLE_TELEMETRY=True,
            HF_HUB_DISABLE_PROGRESS_BARS=True, HF_HUB_DISABLE_UPDATE_CHECK=True,
        )
        self.use_server(self.server)

    def _deactivate(self) -> None:
        # monkeypatch restores what it patched; modules first imported during the test copied
        # patched values (`from ..constants import X`) that it does not know about.
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] == "huggingface_hub" and name not in self._modules_before:
                for constant, original in self._originals.items():
                    if constant in vars(module):
                        setattr(module, constant, original)


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """One local Hub for the whole session; use unique repo ids (`hub_env.repo_id()`)."""
    server = HubServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_env(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[HubEnv]:
    """Client configured for `hub_server` with a fresh HF_HOME; request counters start at zero."""
    upload_mode = hub_server.upload_mode
    hub_server.reset_counters()
    env = HubEnv(hub_server, monkeypatch, tmp_path / "hf_home")
    env._activate()
    try:
        yield env
    finally:
        env._deactivate()
        hub_server.upload_mode = upload_mode
        hub_server.clear_failures()
