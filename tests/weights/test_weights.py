"""zoo_core.weights._weights: sources, cache, integrity, pickle refusal, conversion.

Everything is local: URLs are served by a ThreadingHTTPServer on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from zoo_core.errors import InvalidArgumentError, WeightsError
from zoo_core.weights import _download, _weights
from zoo_core.weights._weights import (
    cache_dir,
    check_safetensors,
    convert_checkpoint,
    fetch_weights,
    is_pickle_path,
    sha256_file,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class Custom:
    """A non-tensor object that weights_only=True must refuse."""

    def __init__(self) -> None:
        self.value = 3


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
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


@pytest.fixture
def server():
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


# ------------------------------------------------------------------ local sources


def test_cache_dir_precedence(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("ZOO_CORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "zoo_core"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "zoo_core"


def test_local_file_and_pin(tmp_path):
    path = write_st(tmp_path / "w.safetensors")
    digest = sha256_file(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert fetch_weights(str(path), progress=False) == path.resolve()
    assert fetch_weights(path, sha256=digest.upper()) == path.resolve()
    assert fetch_weights(str(path), sha256="sha256:" + digest) == path.resolve()


def test_local_sha_mismatch_names_file_expected_actual(tmp_path):
    path = write_st(tmp_path / "w.safetensors")
    actual = sha256_file(path)
    wrong = "0" * 64
    with pytest.raises(WeightsError) as info:
        fetch_weights(str(path), sha256=wrong)
    msg = str(info.value)
    assert str(path) in msg and wrong in msg and actual in msg
    assert path.exists()  # a user's file is never deleted


def test_local_pin_rehashed_after_change(tmp_path):
    path = write_st(tmp_path / "w.safetensors")
    first = sha256_file(path)
    fetch_weights(str(path), sha256=first)
    write_st(path, seed=1)  # same size, new content (and mtime)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    with pytest.raises(WeightsError, match="mismatch"):
        fetch_weights(str(path), sha256=first)


def test_file_url(tmp_path):
    path = write_st(tmp_path / "dir with space" / "w.safetensors")
    assert fetch_weights(path.as_uri()) == path.resolve()
    with pytest.raises(WeightsError, match="not found"):
        fetch_weights((tmp_path / "nope.safetensors").as_uri())


def test_directory_sources(tmp_path):
    d = tmp_path / "d"
    only = write_st(d / "weights.safetensors")
    assert fetch_weights(str(d)) == only.resolve()
    write_st(d / "other.safetensors", seed=1)
    with pytest.raises(WeightsError) as info:
        fetch_weights(str(d))
    assert "other.safetensors" in str(info.value) and "weights.safetensors" in str(info.value)
    preferred = write_st(d / "model.safetensors", seed=2)
    assert fetch_weights(str(d)) == preferred.resolve()
    assert (
        fetch_weights(str(d), filename="other.safetensors") == (d / "other.safetensors").resolve()
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pytorch_model.bin").write_bytes(b"\x80\x02junk")
    with pytest.raises(WeightsError) as info:
        fetch_weights(str(empty))
    assert "pytorch_model.bin" in str(info.value) and "zoo convert" in str(info.value)


def test_pkg_source(tmp_path, monkeypatch):
    root = tmp_path / "site"
    pkg = root / "zoo_weights_testpkg"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    path = write_st(pkg / "weights" / "tiny.safetensors")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "zoo_weights_testpkg", raising=False)
    got = fetch_weights(
        "pkg:zoo_weights_testpkg/weights/tiny.safetensors", sha256=sha256_file(path)
    )
    assert got == path.resolve()
    with pytest.raises(WeightsError, match="does not exist"):
        fetch_weights("pkg:zoo_weights_testpkg/weights/missing.safetensors")
    with pytest.raises(WeightsError, match="not installed"):
        fetch_weights("pkg:zoo_no_such_package_xyz/w.safetensors")
    with pytest.raises(InvalidArgumentError):
        fetch_weights("pkg:/w.safetensors")


def test_bad_inputs(tmp_path):
    with pytest.raises(InvalidArgumentError, match="empty weights source"):
        fetch_weights("")
    with pytest.raises(InvalidArgumentError, match="empty weights source"):
        fetch_weights("   ")
    with pytest.raises(InvalidArgumentError) as info:
        fetch_weights("ftp://example.com/w.safetensors")
    assert "'ftp'" in str(info.value) and "hf-hub:" in str(info.value)
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(WeightsError) as info:
        fetch_weights(str(missing))
    assert str(missing) in str(info.value) and "not found" in str(info.value)
    path = write_st(tmp_path / "w.safetensors")
    with pytest.raises(InvalidArgumentError, match="64 hex"):
        fetch_weights(str(path), sha256="abc")
    with pytest.raises(InvalidArgumentError, match="hf-hub"):
        fetch_weights(str(path), revision="main")
    with pytest.raises(InvalidArgumentError, match="hf-hub:org/repo"):
        fetch_weights("hf-hub:")


# ------------------------------------------------------------- structural checks


def test_check_safetensors_detects_truncation_and_garbage(tmp_path):
    good = write_st(tmp_path / "w.safetensors")
    check_safetensors(good)
    data = good.read_bytes()

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(WeightsError, match="truncated") as info:
        check_safetensors(cut)
    assert str(cut) in str(info.value)
    with pytest.raises(WeightsError, match="truncated"):
        fetch_weights(str(cut))  # a user's local file: an error, not a re-fetch
    assert cut.exists()

    header_cut = tmp_path / "hcut.safetensors"
    header_cut.write_bytes(data[:40])
    with pytest.raises(WeightsError, match="truncated"):
        check_safetensors(header_cut)

    trailing = tmp_path / "trail.safetensors"
    trailing.write_bytes(data + b"xx")
    with pytest.raises(WeightsError, match="trailing"):
        check_safetensors(trailing)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"hello world, not weights at all")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        check_safetensors(garbage, name="https://x/garbage.safetensors")

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        check_safetensors(empty)

    # A header whose first length byte is 0x80 is still a valid safetensors file.
    header = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    header += b" " * (0x280 - len(header))
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(len(header).to_bytes(8, "little") + header + b"\x07")
    assert odd.read_bytes()[:2] == b"\x80\x02"
    check_safetensors(odd)
    assert load_file(str(odd))["a"].tolist() == [7]

    bad_offsets = tmp_path / "bad_offsets.safetensors"
    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}'
    bad_offsets.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(WeightsError, match="'a'"):
        check_safetensors(bad_offsets)


def test_check_safetensors_memo_still_catches_a_rewritten_file(tmp_path, monkeypatch):
    """A file that passed is not re-parsed on the next build, but any write to it (here in
    place, same size, so only mtime/ctime tell) makes it checked again."""
    from zoo_core.weights import _safetensors_header as sh

    good = write_st(tmp_path / "w.safetensors")
    check_safetensors(good)  # written just now: racily clean, not remembered
    assert sh._checked_key(os.stat(good)) not in sh._CHECKED
    monkeypatch.setattr(sh, "_RACY_S", 0.0)
    check_safetensors(good)
    assert sh._checked_key(os.stat(good)) in sh._CHECKED
    data = bytearray(good.read_bytes())
    data[8] = ord("x")  # the JSON header no longer parses
    time.sleep(0.05)  # a timestamp tick, even on coarse filesystems
    with open(good, "r+b") as fh:
        fh.write(bytes(data))
    assert os.path.getsize(good) == len(data)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        check_safetensors(good)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        fetch_weights(str(good))


# ------------------------------------------------------------------- pickle refusal


def test_pickle_refused_by_name_and_by_magic(tmp_path, server):
    assert is_pickle_path("x/model.pth") and is_pickle_path("http://h/a.ckpt?x=1")
    assert is_pickle_path("m.pth.tar") and not is_pickle_path("model.safetensors")
    for name in ("model.pth", "model.pt", "model.bin", "model.ckpt", "model.pkl"):
        with pytest.raises(WeightsError) as info:
            fetch_weights(str(tmp_path / name))
        msg = str(info.value)
        assert "safetensors only" in msg and "zoo convert" in msg and "convert_checkpoint" in msg

    disguised = tmp_path / "disguised.safetensors"
    torch.save(tiny_tensors(), disguised)  # zip container
    assert disguised.read_bytes()[:4] == b"PK\x03\x04"
    with pytest.raises(WeightsError, match="zoo convert") as info:
        fetch_weights(str(disguised))
    assert str(disguised) in str(info.value)

    legacy = tmp_path / "legacy.safetensors"
    torch.save(tiny_tensors(), legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:1] == b"\x80"
    with pytest.raises(WeightsError, match="pickle.*zoo convert"):
        fetch_weights(str(legacy))

    # by URL name: refused without a request
    with pytest.raises(WeightsError, match="zoo convert"):
        fetch_weights(server.url("/model.pth"))
    assert server.state.log == []
    # by magic after download: refused, nothing cached
    server.state.files["/sneaky.safetensors"] = disguised.read_bytes()
    with pytest.raises(WeightsError, match="zoo convert"):
        fetch_weights(server.url("/sneaky.safetensors"), progress=False)
    assert cache_files() == []


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


# --------------------------------------------------------------- convert_checkpoint


def test_convert_round_trip(tmp_path):
    sd = tiny_tensors()
    sd["fc.weight_t"] = sd["fc.weight"].t()  # non-contiguous
    src, dst = tmp_path / "ckpt.pth", tmp_path / "out.safetensors"
    torch.save(sd, src)
    digest = convert_checkpoint(src, dst)
    assert digest == sha256_file(dst)
    loaded = load_file(str(dst))
    assert loaded.keys() == sd.keys()
    for key, value in sd.items():
        assert torch.equal(loaded[key], value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "out.safetensors"]
    assert fetch_weights(str(dst), sha256=digest) == dst.resolve()


def test_convert_shared_tensors(tmp_path):
    base = torch.arange(12.0)
    sd = {"a": base, "tied": base, "view": base[2:6], "grid": base.view(3, 4)}
    src, dst = tmp_path / "shared.pt", tmp_path / "shared.safetensors"
    torch.save(sd, src)
    convert_checkpoint(src, dst)
    loaded = load_file(str(dst))
    for key, value in sd.items():
        assert torch.equal(loaded[key], value), key


def test_convert_unwraps_and_strips_module_prefix(tmp_path, caplog):
    sd = tiny_tensors()
    src = tmp_path / "wrapped.ckpt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, src)
    with caplog.at_level(logging.INFO, logger="zoo_core.weights"):
        convert_checkpoint(src, tmp_path / "a.safetensors")
    assert "module." in caplog.text
    assert load_file(str(tmp_path / "a.safetensors")).keys() == sd.keys()

    torch.save({"model": sd, "optimizer": {"lr": 0.1}}, src)
    convert_checkpoint(src, tmp_path / "b.safetensors")
    assert load_file(str(tmp_path / "b.safetensors")).keys() == sd.keys()

    # only some keys prefixed: left alone
    mixed = {"module.x": torch.ones(1), "y": torch.ones(1)}
    torch.save(mixed, src)
    convert_checkpoint(src, tmp_path / "c.safetensors")
    assert set(load_file(str(tmp_path / "c.safetensors"))) == {"module.x", "y"}

    torch.save({"epoch": 3}, src)
    with pytest.raises(WeightsError, match="state dict"):
        convert_checkpoint(src, tmp_path / "d.safetensors")


def test_convert_refuses_overwrite(tmp_path):
    src, dst = tmp_path / "c.pth", tmp_path / "out.safetensors"
    torch.save(tiny_tensors(), src)
    dst.write_bytes(b"precious")
    with pytest.raises(WeightsError, match="overwrite=True"):
        convert_checkpoint(src, dst)
    assert dst.read_bytes() == b"precious"
    digest = convert_checkpoint(src, dst, overwrite=True)
    assert sha256_file(dst) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth", "out.safetensors"]


def test_convert_refuses_arbitrary_objects(tmp_path):
    src, dst = tmp_path / "evil.pth", tmp_path / "out.safetensors"
    torch.save({"w": torch.ones(2), "cfg": Custom()}, src)
    with pytest.raises(WeightsError) as info:
        convert_checkpoint(src, dst)
    msg = str(info.value)
    assert "arbitrary Python objects" in msg and "Custom" in msg
    assert info.value.__cause__ is not None
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]

    with pytest.raises(WeightsError, match="not found"):
        convert_checkpoint(tmp_path / "missing.pth", dst)


def test_import_does_not_pull_torch():
    code = ("import sys, zoo_core.weights._weights, zoo_core; "
            "assert 'torch' not in sys.modules, 'torch'")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ------------------------------------------------------------------ published pickles


def test_published_pickle_is_verified_converted_and_cached(tmp_path, server):
    """torchvision-style `<arch>-<sha256 prefix>.pth`: prefix checked, converted once."""
    from zoo_core.weights._weights import fetch_published_pickle

    src = tmp_path / "ckpt.pth"
    torch.save(tiny_tensors(), src)
    body = src.read_bytes()
    prefix = hashlib.sha256(body).hexdigest()[:8]
    server.state.files[f"/models/tiny-{prefix}.pth"] = body
    server.state.files["/models/tiny-deadbeef.pth"] = body
    url = server.url(f"/models/tiny-{prefix}.pth")
    path = fetch_published_pickle(url, progress=False)
    assert path.suffix == ".safetensors"
    check_safetensors(path)
    loaded = load_file(str(path))
    assert all(torch.equal(loaded[k], v) for k, v in tiny_tensors().items())
    assert fetch_published_pickle(url, progress=False) == path
    assert full_gets(server, f"/models/tiny-{prefix}.pth") == 1
    assert not any(n.endswith(".part") for n in cache_files())
    with pytest.raises(WeightsError, match="sha256 mismatch.*deadbeef"):
        fetch_published_pickle(server.url("/models/tiny-deadbeef.pth"), progress=False)
    # a user-given pickle URL is still refused
    with pytest.raises(WeightsError, match="zoo convert"):
        fetch_weights(url)
