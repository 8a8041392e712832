"""Shared by tests/weights/test_weights*.py: an isolated weights cache (autouse fixture,
imported by each test file), tiny safetensors files, and a local HTTP server with ranges,
ETags, dropped connections and a request log.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from zoo_core.weights import _download, _weights
from zoo_core.weights._weights import (
    cache_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, name="_isolated")
def isolated_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(_download, "_RETRY_BACKOFF_S", 0.0)
    _weights._DIGESTS.clear()


def tiny_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "fc.weight": torch.randn(5, 8, generator=g),
        "fc.bias": torch.zeros(5),
    }


def write_st(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_tensors(seed), str(path))
    return path


def st_bytes(tmp_path: Path, seed: int = 0) -> bytes:
    return write_st(tmp_path / f"src_{seed}.safetensors", seed).read_bytes()


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, int | None, int]] = []  # (path, range start, status)
        self.drops = 0  # how many responses to cut short
        self.drop_at = 200  # body bytes sent before cutting
        self.ignore_range = False
        self.delay = 0.0  # seconds per 64-byte chunk
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        st = self.server.state
        body = st.files.get(self.path)
        if body is None:
            with st.lock:
                st.log.append((self.path, None, 404))
            self.send_error(404)
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        start = None
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and not st.ignore_range:
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range == etag:
                start = int(match.group(1))
        if start is not None and start >= len(body):
            with st.lock:
                st.log.append((self.path, start, 416))
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with st.lock:
            drop = st.drops > 0
            if drop:
                st.drops -= 1
            st.log.append((self.path, start, 206 if start is not None else 200))
        payload = body[start:] if start is not None else body
        self.send_response(206 if start is not None else 200)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        limit = min(st.drop_at, len(payload)) if drop else len(payload)
        for i in range(0, limit, 64):
            self.wfile.write(payload[i : min(i + 64, limit)])
            if st.delay:
                self.wfile.flush()
                time.sleep(st.delay)
        self.wfile.flush()
        if drop:
            self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # client hung up: not our business
        pass


@pytest.fixture(name="server")
def local_http_server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.state = _State()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def full_gets(srv, path: str) -> int:
    return sum(1 for p, start, status in srv.state.log if p == path and start is None)


def cache_files() -> list[str]:
    root = cache_dir()
    if not root.exists():
        return []
    return sorted(p.name for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))
