"""Shared by the adversarial test modules: try a bad input, classify and count the outcome.

Every bad input goes through :func:`attempt`, which runs it in a thread with a time bound
and classifies the outcome:

* **clear**: the expected zoo_core error, whose message matches (names the thing, says why);
* **unclear**: any other exception, or a message that does not match;
* **silent**: no error at all;
* **lost**: a file that must not change (a victim, the user's data) changed;
* **hung**: still running after the bound.

Anything but *clear* fails the test. The conftest prints the tally at the end of the
session: ``N bad inputs: N clear errors, 0 silent, 0 lost, 0 hung``. Situations whose right
outcome is a repair rather than an error (a whole head dropped, a corrupt entry downloaded
again, a spliced resume avoided) are asserted by plain tests and are not counted.

Also here: :class:`BadServer` (pytest fixture ``bad_server``), a local HTTP server on
127.0.0.1 that can drop, trickle, hang, or omit its ETag, per path.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from zoo_core.errors import ZooError
from zoo_core.weights import _download
from zoo_core.weights._weights import cache_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
TALLY: Counter[str] = Counter()


def tally_line() -> str | None:
    """The summary line, or None when no bad input was tried in this session."""
    tried = sum(TALLY.values())
    if not tried:
        return None
    return (f"{tried} bad inputs: {TALLY['clear']} clear errors, {TALLY['silent']} silent, "
            f"{TALLY['lost']} lost, {TALLY['hung']} hung"
            + (f", {TALLY['unclear']} unclear" if TALLY["unclear"] else ""))


def _snapshot(paths):
    shot = {}
    for p in paths:
        p = Path(p)
        shot[p] = (p.read_bytes(), os.lstat(p).st_mode) if os.path.lexists(p) else None
    return shot


def attempt(what: str, fn, *, error=ZooError, match: str = "", guard=(), bound_s: float = 20.0,
            absent: tuple[str, ...] = ()):
    """Try one bad input; return the error. Fails the test unless the outcome is *clear*."""
    before = _snapshot(guard)
    box: dict[str, BaseException | None] = {}

    def run():
        try:
            fn()
            box["exc"] = None
        except BaseException as exc:  # noqa: BLE001 - classified below
            box["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound_s)
    if thread.is_alive():
        TALLY["hung"] += 1
        pytest.fail(f"{what}: still running after {bound_s} s (hung)")
    after = _snapshot(guard)
    if after != before:
        TALLY["lost"] += 1
        changed = [str(p) for p in before if before[p] != after[p]]
        pytest.fail(f"{what}: changed {changed} (data lost)")
    exc = box["exc"]
    if exc is None:
        TALLY["silent"] += 1
        pytest.fail(f"{what}: no error (silent)")
    text = str(exc)
    if not isinstance(exc, error) or not re.search(match, text, re.S) or any(
            a in text for a in absent):
        TALLY["unclear"] += 1
        raise AssertionError(f"{what}: unclear error {type(exc).__name__}: {text}") from exc
    TALLY["clear"] += 1
    return exc


# ---------------------------------------------------------------------- a bad server


class Route:
    def __init__(self, body: bytes, *, etag: bool = True, drop_at: int | None = None,
                 trickle_s: float = 0.0, hang: bool = False, chunk: int = 4096):
        self.body, self.etag, self.drop_at = body, etag, drop_at
        self.trickle_s, self.hang, self.chunk = trickle_s, hang, chunk


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        spec = srv.routes.get(self.path.split("?")[0])
        srv.log.append((self.path, self.headers.get("Range")))
        if spec is None:
            self.send_error(404)
            return
        if spec.hang:
            srv.release.wait(30)
            return
        body = spec.body
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if match and spec.etag and self.headers.get("If-Range") == tag:
            start = int(match.group(1))
        elif match and not spec.etag:
            start = int(match.group(1))  # a naive server: resumes whatever it has now
        payload = body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(payload)))
        if spec.etag:
            self.send_header("ETag", tag)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        limit = len(payload) if spec.drop_at is None else min(spec.drop_at, len(payload))
        step = 1 if spec.trickle_s else spec.chunk
        try:
            for i in range(0, limit, step):
                if srv.release.is_set():
                    return
                self.wfile.write(payload[i:i + step])
                self.wfile.flush()
                if spec.trickle_s:
                    time.sleep(spec.trickle_s)
        except OSError:
            return
        if spec.drop_at is not None:
            spec.drop_at = None  # drop once
            self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def bad_server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.log, srv.release = {}, [], threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh download cache, no proxies, fast retries and a 2 s socket timeout."""
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ZOO_CORE_CACHE_SHARED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(_download, "_RETRY_BACKOFF_S", 0.0)
    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_TIMEOUT", "2")


def st_bytes(tmp_path: Path, seed: int = 0, n: int = 64) -> bytes:
    g = torch.Generator().manual_seed(seed)
    path = tmp_path / f"w{seed}-{n}.safetensors"
    save_file({"a.weight": torch.randn(n, n, generator=g), "a.bias": torch.randn(n, generator=g)},
              str(path))
    return path.read_bytes()


def entry_dir(url: str) -> Path:
    return cache_dir() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def flip_keep_stat(path: Path, offset: int = -1) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    with open(path, "r+b") as fh:  # in place: same inode, same size
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored, ctime is not

