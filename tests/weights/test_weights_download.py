"""zoo_core.weights._weights: URL downloads, cache hits, resume, leftovers, concurrency.

Everything is local: URLs are served by a ThreadingHTTPServer on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from weights_fixtures import (  # noqa: F401  (fixtures)
    REPO_ROOT,
    cache_files,
    full_gets,
    isolated_cache,
    local_http_server,
    st_bytes,
)

from zoo_core.errors import WeightsError
from zoo_core.weights._weights import (
    cache_dir,
    fetch_weights,
)

# ------------------------------------------------------------------ URL downloads


def test_url_download_then_cache_hit_without_request(tmp_path, server):
    body = st_bytes(tmp_path)
    digest = hashlib.sha256(body).hexdigest()
    server.state.files["/models/w.safetensors"] = body
    url = server.url("/models/w.safetensors")

    path = fetch_weights(url, progress=False)
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    assert path == cache_dir() / "downloads" / key / "w.safetensors"
    assert path.read_bytes() == body
    assert Path(str(path) + ".sha256").exists()
    assert cache_files() == ["w.safetensors", "w.safetensors.sha256"]
    assert len(server.state.log) == 1

    assert fetch_weights(url, progress=False) == path
    assert fetch_weights(url, sha256=digest, progress=False) == path
    assert len(server.state.log) == 1  # served from cache, sidecar trusted

    # sidecar goes stale (mtime changed): re-hashed, still no request
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fetch_weights(url, sha256=digest, progress=False) == path
    assert len(server.state.log) == 1


def test_url_sha_mismatch_leaves_nothing(tmp_path, server):
    body = st_bytes(tmp_path)
    actual = hashlib.sha256(body).hexdigest()
    server.state.files["/w.safetensors"] = body
    url = server.url("/w.safetensors")
    wrong = "ab" * 32
    with pytest.raises(WeightsError) as info:
        fetch_weights(url, sha256=wrong, progress=False)
    msg = str(info.value)
    assert url in msg and wrong in msg and actual in msg
    assert cache_files() == []
    assert len(server.state.log) == 1  # a fresh download that mismatches is not retried


def test_http_404(server):
    url = server.url("/missing.safetensors")
    with pytest.raises(WeightsError, match="404") as info:
        fetch_weights(url, progress=False)
    assert url in str(info.value)
    assert len(server.state.log) == 1


def test_corrupt_cache_entry_is_refetched(tmp_path, server):
    body = st_bytes(tmp_path)
    server.state.files["/w.safetensors"] = body
    url = server.url("/w.safetensors")
    path = fetch_weights(url, progress=False)

    # Truncated cache entry (new inode, as any writer should do): re-fetched.
    tmp = path.with_name("x.tmp")
    tmp.write_bytes(body[:-16])
    os.replace(tmp, path)
    assert fetch_weights(url, progress=False) == path
    assert path.read_bytes() == body
    assert full_gets(server, "/w.safetensors") == 2

    # Valid safetensors but not the pinned file: deleted and re-fetched once.
    other = st_bytes(tmp_path, seed=5)
    tmp.write_bytes(other)
    os.replace(tmp, path)
    assert fetch_weights(url, sha256=hashlib.sha256(body).hexdigest(), progress=False) == path
    assert path.read_bytes() == body
    assert full_gets(server, "/w.safetensors") == 3


def test_dropped_connection_resumes(tmp_path, server, caplog):
    body = st_bytes(tmp_path)
    server.state.files["/w.safetensors"] = body
    server.state.drops = 1
    server.state.drop_at = 200
    url = server.url("/w.safetensors")
    with caplog.at_level(logging.INFO, logger="zoo_core.weights"):
        path = fetch_weights(url, sha256=hashlib.sha256(body).hexdigest(), progress=False)
    assert path.read_bytes() == body
    assert [(s, c) for _, s, c in server.state.log] == [(None, 200), (200, 206)]
    assert "retrying" in caplog.text
    assert cache_files() == ["w.safetensors", "w.safetensors.sha256"]


def test_dropped_connection_restarts_when_server_ignores_range(tmp_path, server):
    body = st_bytes(tmp_path)
    server.state.files["/w.safetensors"] = body
    server.state.drops = 1
    server.state.ignore_range = True
    path = fetch_weights(server.url("/w.safetensors"), progress=False)
    assert path.read_bytes() == body
    assert full_gets(server, "/w.safetensors") == 2


def test_dropped_connection_gives_up_then_resumes_later(tmp_path, server):
    body = st_bytes(tmp_path)
    server.state.files["/w.safetensors"] = body
    server.state.drops = 100
    server.state.drop_at = 100
    url = server.url("/w.safetensors")
    with pytest.raises(WeightsError) as info:
        fetch_weights(url, progress=False)
    assert url in str(info.value) and "3 attempts" in str(info.value)
    assert len(server.state.log) == 3
    assert "w.safetensors" not in cache_files()  # only the .part: never mistaken for good
    assert "w.safetensors.part" in cache_files()

    server.state.drops = 0
    path = fetch_weights(url, progress=False)
    assert path.read_bytes() == body
    assert server.state.log[-1][1] == 300  # resumed where the three attempts left off
    assert cache_files() == ["w.safetensors", "w.safetensors.sha256"]


def _entry_dir(url: str) -> Path:
    return cache_dir() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16]


def test_killed_download_leftovers(tmp_path, server):
    body = st_bytes(tmp_path)
    server.state.files["/w.safetensors"] = body
    url = server.url("/w.safetensors")
    entry = _entry_dir(url)
    entry.mkdir(parents=True)

    # A hard-killed download left a valid prefix and the ETag of its first response:
    # the next fetch resumes it (If-Range: that ETag).
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    (entry / "w.safetensors.part").write_bytes(body[:150])
    (entry / "w.safetensors.part.meta").write_text(etag)
    assert fetch_weights(url, progress=False).read_bytes() == body
    assert [(s, c) for _, s, c in server.state.log] == [(150, 206)]

    # A garbage .part (stale or corrupt) plus a stray temp file: restarted cleanly.
    path = entry / "w.safetensors"
    path.unlink()
    (entry / "w.safetensors.sha256").unlink()
    (entry / "w.safetensors.part").write_bytes(b"\xff" * 150)
    (entry / "w.safetensors.part.meta").write_text(etag)
    (entry / ".w.safetensors.sha256.123.tmp").write_bytes(b"junk")
    server.state.log.clear()
    assert fetch_weights(url, progress=False).read_bytes() == body
    assert [(s, c) for _, s, c in server.state.log] == [(150, 206), (None, 200)]
    assert not (entry / "w.safetensors.part").exists()


def test_two_processes_share_one_download(tmp_path, server):
    body = st_bytes(tmp_path)
    digest = hashlib.sha256(body).hexdigest()
    server.state.files["/w.safetensors"] = body
    server.state.delay = 0.1  # ~1.5 s per download: both processes overlap
    url = server.url("/w.safetensors")
    script = textwrap.dedent(
        f"""
        import sys
        from zoo_core.weights._weights import fetch_weights, sha256_file
        p = fetch_weights({url!r}, sha256={digest!r}, progress=False)
        print(p, sha256_file(p))
        assert "torch" not in sys.modules
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            cwd=str(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(out.strip())
    assert outs[0] == outs[1]
    path, got = outs[0].rsplit(" ", 1)
    assert got == digest and Path(path).read_bytes() == body
    assert full_gets(server, "/w.safetensors") == 1
    assert cache_files() == ["w.safetensors", "w.safetensors.sha256"]
