"""A local, in-memory Hugging Face Hub for offline tests.

`HubServer` speaks the part of the Hub HTTP protocol that the real `huggingface_hub` client
(checked with 2.4.0) uses for pushing and pulling models: repo creation, preupload, NDJSON
commits, the LFS batch API, branches, tags, repo info, tree listings and `/resolve` downloads.
It runs a `ThreadingHTTPServer` on 127.0.0.1 in a daemon thread; repos live in memory as
git-like commits (full file snapshots, 40-hex ids), so tests can inspect exactly what a push did.

Parts: the repo model in hub_store.py, the endpoint handlers in hub_endpoints.py (a mixin),
the HTTP server and request handler in hub_http.py; the pytest fixtures `hub_server`
(session) and `hub_env` (function, yields a `HubEnv`) in hub_fixtures.py.

Protocol notes: /work/shared/hub-protocol.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import threading
from collections import Counter
from urllib.parse import parse_qs, unquote, urlsplit

from hub_endpoints import HubEndpoints
from hub_http import _Handler, _HTTPServer
from hub_store import (
    DEFAULT_GITATTRIBUTES,
    LFS_PUT_WARNING,
    REPO_TYPES,
    UPLOAD_MODES,
    URL_PREFIX,
    Blob,
    CommitRecord,
    HubError,
    _json,
    _now,
    _Repo,
)

# What tests import from here; the rest of the local Hub lives in hub_*.py.
__all__ = ["LFS_PUT_WARNING", "HubError", "HubServer", "_json"]


class HubServer(HubEndpoints):
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

