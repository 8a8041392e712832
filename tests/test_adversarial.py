"""Bad inputs against the weights cache, the downloader, Hub loading and registry.toml.

Every bad input goes through :func:`attempt`, which runs it in a thread with a time bound
and classifies the outcome:

* **clear**: the expected zoo_core error, whose message matches (names the thing, says why);
* **unclear**: any other exception, or a message that does not match;
* **silent**: no error at all;
* **lost**: a file that must not change (a victim, the user's data) changed;
* **hung**: still running after the bound.

Anything but *clear* fails the test. The module prints its tally at the end of the session:
``N bad inputs: N clear errors, 0 silent, 0 lost, 0 hung``. Situations whose right outcome
is a repair rather than an error (a whole head dropped, a corrupt entry downloaded again,
a spliced resume avoided) are asserted by plain tests here and are not counted.

All servers are local (127.0.0.1): a small configurable HTTP server below, and the Hub
server of tests/hubserver.py.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hubserver import HubServer, _json
from safetensors.torch import save_file

import zoo_core
from zoo_core import _download
from zoo_core._config import load_catalog
from zoo_core._weights import cache_dir, fetch_weights
from zoo_core.errors import (
    ConfigError,
    HubError,
    InvalidArgumentError,
    WeightsError,
    ZooError,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TALLY: Counter[str] = Counter()
UNCLEAR: list[str] = []
TALLY_KEY = pytest.StashKey[str]()


@pytest.fixture(scope="module", autouse=True)
def _print_tally(request):
    yield
    tried = sum(TALLY.values())
    line = (f"{tried} bad inputs: {TALLY['clear']} clear errors, {TALLY['silent']} silent, "
            f"{TALLY['lost']} lost, {TALLY['hung']} hung"
            + (f", {TALLY['unclear']} unclear" if TALLY["unclear"] else ""))
    request.config.stash[TALLY_KEY] = line
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(f"[adversarial] {line}")



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
        UNCLEAR.append(f"{what}: {type(exc).__name__}: {text}")
        raise AssertionError(f"{what}: unclear error {type(exc).__name__}: {text}") from exc
    TALLY["clear"] += 1
    return exc


# ---------------------------------------------------------------------- a bad server


class _Spec:
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
def bad_server():
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


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
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


# ------------------------------------------------------------------ data loss: links


def test_planted_links_in_the_cache_are_refused_never_written_through(tmp_path, bad_server):
    body = st_bytes(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data\n" * 100)
    url = bad_server.url("/w.safetensors")
    bad_server.routes["/w.safetensors"] = _Spec(body)
    entry = entry_dir(url)
    entry.mkdir(parents=True)
    name = "w.safetensors"
    etag = '"' + sha(body)[:16] + '"'

    def plant(*links: str, meta: str | None = None):
        for p in entry.iterdir():
            p.unlink()
        for link in links:
            (entry / link).symlink_to(victim)
        if meta is not None:
            (entry / f"{name}.part.meta").write_text(meta)

    cases = [
        ("planted .part link", (f"{name}.part",), None),
        ("planted .part link + stale .part.meta", (f"{name}.part",), etag),
        ("planted .part.meta link", (f"{name}.part.meta",), None),
        ("planted cache entry link", (name,), None),
        ("planted sidecar link", (f"{name}.sha256",), None),
        ("planted .lock link", (f"{name}.lock",), None),
    ]
    for what, links, meta in cases:
        plant(*links, meta=meta)
        if links[0] == f"{name}.sha256":  # a real entry next to the planted sidecar
            (entry / name).write_bytes(body)
        attempt(what, lambda: fetch_weights(url, progress=False), error=WeightsError,
                match=r"is a symlink.*never follows links.*zoo cache clean", guard=[victim])
        assert (entry / links[0]).is_symlink()  # refused, not "repaired" through the link

    # A .part hard-linked to another file (same owner): never appended to.
    for p in entry.iterdir():
        p.unlink()
    os.link(victim, entry / f"{name}.part")
    (entry / f"{name}.part.meta").write_text(etag)
    attempt("hard-linked .part", lambda: fetch_weights(url, progress=False),
            error=WeightsError, match=r"hard links", guard=[victim])

    # A FIFO planted as the cache entry: refused without blocking in open().
    for p in entry.iterdir():
        p.unlink()
    os.mkfifo(entry / name)
    attempt("FIFO as cache entry", lambda: fetch_weights(url, progress=False),
            error=WeightsError, match=r"not a regular file", bound_s=10)


def test_cache_directories_are_private_unless_shared(tmp_path, bad_server, monkeypatch):
    bad_server.routes["/w.safetensors"] = _Spec(st_bytes(tmp_path))
    url = bad_server.url("/w.safetensors")
    fetch_weights(url, progress=False)
    for d in (cache_dir(), cache_dir() / "downloads", entry_dir(url)):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "shared"))
    monkeypatch.setenv("ZOO_CORE_CACHE_SHARED", "1")
    old = os.umask(0o022)
    try:
        fetch_weights(url, progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(entry_dir(url).stat().st_mode) == 0o755


# ----------------------------------------------------------- silent wrong weights


def _flip_keep_stat(path: Path, offset: int = -1) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    with open(path, "r+b") as fh:  # in place: same inode, same size
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored, ctime is not


def test_flipped_byte_in_cache_is_found_pinned_or_not(tmp_path, bad_server):
    body = st_bytes(tmp_path)
    bad_server.routes["/w.safetensors"] = _Spec(body)
    url = bad_server.url("/w.safetensors")
    path = fetch_weights(url, sha256=sha(body), progress=False)
    side = path.with_name(path.name + ".sha256")
    recorded = json.loads(side.read_text())["sha256"]

    _flip_keep_stat(path)
    del bad_server.routes["/w.safetensors"]  # the server lost it: no silent re-download
    attempt("flipped byte, pinned", lambda: fetch_weights(url, sha256=sha(body), progress=False),
            error=WeightsError, match=r"404.*cached copy was refused.*changed since it was "
                                      r"downloaded")
    path.write_bytes(body)
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 0xFF]))
    side.write_text(json.dumps({"sha256": recorded, "stat": [0, 0, 0, 0, 0]}))
    attempt("flipped byte, no pin", lambda: fetch_weights(url, progress=False),
            error=WeightsError, match=r"changed since it was downloaded")

    # With the server back, the bad copy is replaced by a fresh download.
    bad_server.routes["/w.safetensors"] = _Spec(body)
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 0xFF]))
    side.write_text(json.dumps({"sha256": recorded, "stat": [0, 0, 0, 0, 0]}))
    assert fetch_weights(url, progress=False).read_bytes() == body
    assert json.loads(side.read_text())["sha256"] == recorded

    from zoo_core._cache_admin import verify_cache

    _flip_keep_stat(path)
    report = verify_cache()
    assert [p for p, _ in report.bad] == [path] and "changed" in report.bad[0][1]


def test_resume_without_validator_starts_over_never_splices(tmp_path, bad_server):
    a, b = st_bytes(tmp_path, 1), st_bytes(tmp_path, 2)
    assert len(a) == len(b)
    spec = _Spec(a, etag=False, drop_at=len(a) // 2)
    bad_server.routes["/w.safetensors"] = spec
    url = bad_server.url("/w.safetensors")
    _download._MAX_ATTEMPTS, saved = 1, _download._MAX_ATTEMPTS
    try:
        with pytest.raises(WeightsError, match="is kept"):
            fetch_weights(url, progress=False)
    finally:
        _download._MAX_ATTEMPTS = saved
    bad_server.routes["/w.safetensors"] = _Spec(b, etag=False)  # the file changed meanwhile
    exc = attempt("changed file, resume without validator",
                  lambda: fetch_weights(url, sha256=sha(a), progress=False),
                  error=WeightsError, match=r"sha256 mismatch")
    assert f"got {sha(b)}" in str(exc)  # all of B: a splice would be neither A nor B
    assert bad_server.log[-1][1] is None  # the retry asked for the whole file
    assert fetch_weights(url, progress=False).read_bytes() == b


# ------------------------------------------------------------------ dtypes and heads

TINY = '''
import zoo_core

@zoo_core.hookimpl
def register_backbones(register):
    register(zoo_core.BackboneSpec(name="advnet", builder="advnet_plugin:make", head="head",
                                   stages=("stem",),
                                   data_config=zoo_core.DataConfig(input_size=(3, 8, 8))))

def make(num_classes, width=8):
    import torch.nn as nn
    m = nn.Module()
    m.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, width))
    m.head = nn.Linear(width, num_classes)
    m.forward = lambda x: m.head(m.stem(x))
    return m
'''


@pytest.fixture
def advnet(make_dist):
    make_dist("advnet-plugin", "advnet_plugin", TINY)
    import advnet_plugin

    return advnet_plugin


def _state(advnet, num_classes=3, width=8):
    torch.manual_seed(0)
    return {k: v.clone() for k, v in advnet.make(num_classes, width).state_dict().items()}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "normal"])
def test_dtype_that_changes_meaning_is_refused(advnet, tmp_path, fast):
    cases = {
        "I32 into float weight": ("stem.0.weight", lambda t: t.to(torch.int32)),
        "BOOL into float bias": ("head.bias", lambda t: t > 0),
        "C64 into float weight": ("head.weight", lambda t: t.to(torch.complex64)),
        "F32 num_batches_tracked 3.7": ("stem.1.num_batches_tracked",
                                        lambda t: torch.tensor(3.7)),
    }
    for what, (key, change) in cases.items():
        sd = _state(advnet)
        sd[key] = change(sd[key])
        path = tmp_path / f"{key}.safetensors"
        save_file(sd, str(path))
        attempt(f"{what} ({'fast' if fast else 'normal'} path)",
                lambda p=path: zoo_core.build_model("advnet", 3, "finetune", weights=str(p),
                                                    fast=fast),
                error=WeightsError,
                match=rf"{re.escape(key)} \(\w+ in the file, \w+ in the model\)")
    # an fp16 file still loads into an fp32 model, and I32 counters into I64 buffers
    sd = _state(advnet)
    sd = {k: (v.half() if v.is_floating_point() else v.to(torch.int32)) for k, v in sd.items()}
    save_file(sd, str(tmp_path / "half.safetensors"))
    half = str(tmp_path / "half.safetensors")
    model = zoo_core.build_model("advnet", 3, "finetune", weights=half, fast=fast)
    assert model.head.weight.dtype == torch.float32
    assert model.stem[1].num_batches_tracked.dtype == torch.int64


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "normal"])
def test_head_is_loaded_or_dropped_as_a_whole(advnet, tmp_path, fast):
    sd2 = _state(advnet)
    sd2["head.weight"] = torch.randn(3, 5)  # another in_features: cannot load
    sd2["head.bias"] = torch.full((3,), 7.0)  # right shape: must not load on its own
    path = tmp_path / "head.safetensors"
    save_file(sd2, str(path))
    model = zoo_core.build_model("advnet", 3, "finetune", weights=str(path), fast=fast)
    assert sorted(model.zoo.dropped_head_keys) == ["head.bias", "head.weight"]
    assert not torch.equal(model.head.bias, torch.full((3,), 7.0))  # not half-loaded
    assert torch.equal(model.stem[0].weight, sd2["stem.0.weight"])


def test_control_characters_in_tensor_names_are_escaped(advnet, tmp_path):
    sd = _state(advnet)
    sd["evil\x1b[2J\x07name"] = torch.zeros(1)
    path = tmp_path / "evil.safetensors"
    save_file(sd, str(path))
    exc = attempt("control characters in a tensor name",
                  lambda: zoo_core.build_model("advnet", 3, "finetune", weights=str(path)),
                  error=WeightsError, match=r"unexpected keys.*evil\\x1b\[2J\\x07name")
    assert "\x1b" not in str(exc) and "\x07" not in str(exc)


def test_header_too_large_says_so(tmp_path):
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(struct.pack("<Q", 100_000_001) + b'{"a": 1}')
    attempt("100,000,001-byte header", lambda: fetch_weights(str(path)), error=WeightsError,
            match=r"header too large \(100000001 bytes, limit 100000000\)")


def test_fifo_and_device_as_weights_do_not_block(tmp_path):
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    attempt("FIFO as weights=", lambda: fetch_weights(str(fifo)), error=WeightsError,
            match=r"not a regular file \(a FIFO", bound_s=10)
    attempt("/dev/zero as weights=", lambda: fetch_weights("/dev/zero"), error=WeightsError,
            match=r"not a regular file", bound_s=10)
    attempt("FIFO through build_model",
            lambda: zoo_core.build_model("zoonet_s", 3, "finetune", weights=str(fifo)),
            error=WeightsError, match=r"not a regular file", bound_s=10)


# ------------------------------------------------------------------ URLs and secrets


def test_bad_urls_get_clear_errors_without_credentials(tmp_path, bad_server):
    base = bad_server.url("")
    attempt("%00 in a URL", lambda: fetch_weights(base + "/w%00.safetensors"),
            error=InvalidArgumentError, match=r"control characters.*%00")
    host = base.split("//", 1)[1]
    exc = attempt("user:pass@ URL",
                  lambda: fetch_weights(f"http://alice:s3cret@{host}/w.safetensors"),
                  error=InvalidArgumentError, match=r"carries credentials", absent=("s3cret",))
    assert "***@" in str(exc)
    attempt("raw newline in a URL", lambda: fetch_weights(base + "/w\n.safetensors"),
            error=InvalidArgumentError, match="whitespace or control")
    attempt("bad port", lambda: fetch_weights("http://127.0.0.1:99999/w.safetensors"),
            error=InvalidArgumentError, match="malformed URL")
    attempt("404 with a token in the query",
            lambda: fetch_weights(base + "/missing.safetensors?token=s3cret", progress=False),
            error=WeightsError, match=r"token=\*\*\*.*HTTP 404", absent=("s3cret",))

    body = st_bytes(tmp_path)
    bad_server.routes["/w.safetensors"] = _Spec(body)
    path = fetch_weights(base + "/w.safetensors?token=s3cret&v=1", progress=False)
    record = path.with_name(path.name + ".sha256").read_text()
    assert "s3cret" not in record and "token=***" in record and "v=1" in record


def test_pkg_source_naming_a_module_is_refused_without_importing_it(capsys):
    sys.modules.pop("this", None)
    attempt("pkg:this/…", lambda: fetch_weights("pkg:this/w.safetensors"), error=WeightsError,
            match=r"'this' is a module, not a package.*not imported")
    assert "this" not in sys.modules
    assert "Zen of Python" not in capsys.readouterr().out
    attempt("pkg: of a missing package", lambda: fetch_weights("pkg:zoo_nope_xyz/w.safetensors"),
            error=WeightsError, match="not installed")


# ------------------------------------------------------------------------------ hangs


def test_trickle_stall_and_deadline_end_with_the_part_kept(tmp_path, bad_server, monkeypatch):
    body = st_bytes(tmp_path)
    bad_server.routes["/slow.safetensors"] = _Spec(body, trickle_s=0.3)
    url = bad_server.url("/slow.safetensors")
    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_MIN_RATE", "100")
    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_RATE_WINDOW", "1")
    attempt("server trickling 1 byte per 0.3 s", lambda: fetch_weights(url, progress=False),
            error=WeightsError, match=r"stalled.*ZOO_CORE_DOWNLOAD_MIN_RATE.*is kept", bound_s=15)
    part = entry_dir(url) / "slow.safetensors.part"
    assert part.stat().st_size > 0

    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_MIN_RATE", "0")
    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_DEADLINE", "1.5")
    attempt("slow but steady server past the deadline", lambda: fetch_weights(url, progress=False),
            error=WeightsError, match=r"did not finish within 1.5 s.*DEADLINE.*is kept",
            bound_s=15)
    grown = part.stat().st_size
    assert grown > 0

    bad_server.routes["/hang.safetensors"] = _Spec(body, hang=True)
    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_TIMEOUT", "0.5")
    attempt("server that never answers", lambda: fetch_weights(bad_server.url("/hang.safetensors"),
                                                               progress=False),
            error=WeightsError, match=r"failed after 3 attempts.*timed out", bound_s=15)

    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_TIMEOUT", "soon")
    attempt("bad ZOO_CORE_DOWNLOAD_TIMEOUT", lambda: fetch_weights(url, progress=False),
            error=InvalidArgumentError, match="ZOO_CORE_DOWNLOAD_TIMEOUT='soon'")

    # resumed from the kept part once the server is fast again
    monkeypatch.delenv("ZOO_CORE_DOWNLOAD_DEADLINE")
    monkeypatch.setenv("ZOO_CORE_DOWNLOAD_TIMEOUT", "5")
    bad_server.routes["/slow.safetensors"] = _Spec(body)
    assert fetch_weights(url, progress=False).read_bytes() == body
    assert bad_server.log[-1][1] == f"bytes={grown}-"


class _HangingHub(HubServer):
    """A Hub whose commit endpoint never answers (until released)."""

    release = threading.Event()

    def _h_commit(self, req, body, *args):
        self.release.wait(30)
        return _json({"error": "released at teardown"}, 500)  # nothing is committed


def test_push_to_a_server_that_never_answers_times_out(hub_env, monkeypatch, tmp_path):
    server = _HangingHub().start()
    server._httpd.handle_error = lambda *args: None  # the client hung up, on purpose
    try:
        hub_env.use_server(server)
        hub_env.fast_retries()  # huggingface_hub retries a timed-out commit 5 times
        monkeypatch.setenv("ZOO_CORE_PUSH_TIMEOUT", "1")
        model = zoo_core.build_model("zoonet_s", 3, "finetune")
        attempt("commit never answered", lambda: zoo_core.push_to_hub(model, "org/hang"),
                error=HubError, match=r"timed out: no answer within 1 s.*ZOO_CORE_PUSH_TIMEOUT",
                bound_s=30)
    finally:
        _HangingHub.release.set()
        server.stop()


def test_push_leftovers_of_killed_processes_are_swept(tmp_path, monkeypatch):
    import tempfile

    from zoo_core._push_guard import sweep_push_leftovers

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    script = ("import os, signal, zoo_core._push_guard as g\n"
              "d = g.push_tmpdir()\n"
              "open(os.path.join(d.name, 'model.safetensors'), 'wb').write(b'x' * 1000)\n"
              "print(d.name, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -signal.SIGKILL
    left = Path(out.stdout.strip())
    assert left.is_dir() and left.name.startswith("zoo-push-")
    mine = tmp_path / f"zoo-push-{os.getpid()}-live"
    mine.mkdir()
    assert sweep_push_leftovers() == [left]
    assert not left.exists() and mine.exists()  # a live process's copy stays


# -------------------------------------------------------------------------- full disk

FULL_DISK = r'''
import json, os, resource, sys
url, work = sys.argv[1], sys.argv[2]
import torch, zoo_core
from zoo_core._weights import convert_checkpoint, fetch_weights
model = zoo_core.build_model("zoonet_s", 3, "finetune")
torch.save(model.state_dict(), os.path.join(work, "ckpt.pth"))
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
out = {}
def run(name, fn):
    try:
        fn()
        out[name] = ["silent", ""]
    except zoo_core.ZooError as exc:
        out[name] = [type(exc).__name__, str(exc)]
    except BaseException as exc:
        out[name] = ["raw " + type(exc).__name__, str(exc)]
run("download", lambda: fetch_weights(url, progress=False))
run("save_pretrained", lambda: zoo_core.save_pretrained(model, os.path.join(work, "saved")))
run("convert", lambda: convert_checkpoint(os.path.join(work, "ckpt.pth"),
                                          os.path.join(work, "out.safetensors")))
print(json.dumps(out))
'''


@pytest.mark.slow
def test_full_disk_is_a_clear_error_naming_directory_and_space(tmp_path, bad_server):
    body = (REPO_ROOT / "plugins/zoonet/weights/zoonet_s-digits04.safetensors").read_bytes()
    bad_server.routes["/big.safetensors"] = _Spec(body)
    url = bad_server.url("/big.safetensors")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), ZOO_CORE_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, url, str(work)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {
        "download": ("WeightsError", rf"no space to write the download of .* in .*downloads.*"
                                     rf"needs {len(body) / 1024:.1f} KiB.*is kept"),
        "save_pretrained": ("HubError", rf"no space to write model.safetensors in {work}.*needs"),
        "convert": ("WeightsError", rf"no space to write out.safetensors in {work}.*needs"),
    }
    errors = {"WeightsError": WeightsError, "HubError": HubError}
    for name, (kind, pattern) in expected.items():
        got_kind, text = results[name]

        def replay(got_kind=got_kind, text=text):  # the subprocess's outcome, classified here
            if got_kind != "silent":
                raise errors.get(got_kind, RuntimeError)(f"{got_kind}: {text}")

        attempt(f"full disk: {name}", replay, error=errors[kind], match=pattern)
    assert not (work / "saved").exists() and not (work / "out.safetensors").exists()
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["ckpt.pth"]

    # the CLI: an error line, no traceback
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (65536, -1))"
    cli = subprocess.run(
        [sys.executable, "-c", f"{limit}\nimport sys\nfrom zoo_core.cli import main\n"
         f"sys.exit(main(['build', 'zoonet_s', '-n', '3', '-s', 'finetune', '--weights', "
         f"{bad_server.url('/big.safetensors?cli=1')!r}]))"],
        env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "zoo: error: no space" in cli.stderr, cli.stderr
    assert "Traceback" not in cli.stderr


# ------------------------------------------------------------------- Hub: blobs


def _hub_blob(hub_env, repo: str, filename: str = "model.safetensors") -> Path:
    snapshots = hub_env.cache_dir / f"models--{repo.replace('/', '--')}" / "snapshots"
    (link,) = list(snapshots.glob(f"*/{filename}"))
    return Path(os.path.realpath(link))


HTTPX_LFS_WARNING = "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"


@pytest.mark.parametrize("mode", [
    "regular", pytest.param("lfs", marks=pytest.mark.filterwarnings(HTTPX_LFS_WARNING))])
def test_corrupt_hf_cache_blob_blames_the_cache(hub_env, mode):
    hub_env.set_upload_mode(mode)
    repo = hub_env.repo_id("blob")
    model = zoo_core.build_model("zoonet_s", 3, "finetune")
    zoo_core.push_to_hub(model, repo)
    zoo_core.build_model(f"hf-hub:{repo}")
    blob = _hub_blob(hub_env, repo)
    assert len(blob.name) == (64 if mode == "lfs" else 40)
    _flip_keep_stat(blob, offset=-3)
    exc = attempt(f"corrupt HF cache blob ({mode})",
                  lambda: zoo_core.build_model(f"hf-hub:{repo}"), error=WeightsError,
                  match=r"local Hugging Face cache holds a corrupt copy.*The repo is not at "
                        r"fault.*Delete .*and load again")
    assert "do not belong together" not in str(exc)
    blob.unlink()  # what the message says to do
    assert zoo_core.build_model(f"hf-hub:{repo}").zoo.num_classes == 3


@pytest.mark.filterwarnings(HTTPX_LFS_WARNING)
def test_corrupt_blob_of_a_timm_repo_does_not_load(hub_env):
    hub_env.set_upload_mode("lfs")
    repo = hub_env.repo_id("timm-blob")
    zoo_core.push_to_hub(zoo_core.build_model("timm/test_resnet", 3, "scratch"), repo)
    config = json.loads(hub_env.server.files(repo)["config.json"])
    del config["zoo_core"]  # as timm's own push_to_hf_hub writes it: no pin of ours
    from huggingface_hub import CommitOperationAdd

    update = CommitOperationAdd("config.json", json.dumps(config).encode())
    hub_env.api.create_commit(repo, [update], commit_message="timm-style config")
    zoo_core.build_model(f"hf-hub:{repo}")
    blob = _hub_blob(hub_env, repo)
    _flip_keep_stat(blob, offset=-3)
    attempt("corrupt HF cache blob (timm repo)", lambda: zoo_core.build_model(f"hf-hub:{repo}"),
            error=WeightsError, match=r"corrupt copy.*sha256")
    from zoo_core._cache_admin import verify_cache

    assert blob in [p for p, _ in verify_cache(hf=True).bad]


# --------------------------------------------------------- Hub: untrusted config.json


def _raw_repo(hub_env, name: str, config: bytes | dict, weights: bytes = b"") -> str:
    from huggingface_hub import CommitOperationAdd

    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    repo = hub_env.repo_id(name)
    hub_env.api.create_repo(repo)
    files = {"config.json": data, **({"model.safetensors": weights} if weights else {})}
    hub_env.api.create_commit(repo, [CommitOperationAdd(p, d) for p, d in files.items()],
                              commit_message="raw")
    return repo


@pytest.fixture(scope="module")
def zoonet_config(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    zoo_core.save_pretrained(zoo_core.build_model("zoonet_s", 3, "finetune"), out / "m")
    return json.loads((out / "m" / "config.json").read_text())


def test_untrusted_config_json_is_bounded_and_checked(hub_env, zoonet_config):
    def load(name, config, **kw):
        repo = _raw_repo(hub_env, name, config)
        return lambda: zoo_core.build_model(f"hf-hub:{repo}", **kw)

    attempt("100,000 nested [", load("deep", b"[" * 100_000 + b"]" * 100_000), error=HubError,
            match=r"config.json of .* cannot be read as JSON: nested deeper than 32 levels")
    attempt("config.json not UTF-8", load("latin", b'{"a": "\xe9"}'), error=HubError,
            match="cannot be read as JSON")

    def variant(path: str, value) -> dict:
        config = json.loads(json.dumps(zoonet_config))
        target = config
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
        return config

    for field, value, pattern in [
        ("num_classes", 10**12, r"num_classes is 1000000000000, outside 1 .. 1000000"),
        ("num_classes", 0, r"num_classes is 0, outside"),
        ("num_classes", "3", r"num_classes must be an integer"),
        ("pretrained_cfg.num_classes", 10**7, r"pretrained_cfg.num_classes is 10000000"),
        ("pretrained_cfg.mean", [float("nan"), 0.5, 0.5], r"pretrained_cfg.mean holds a "
                                                          r"non-finite value"),
        ("pretrained_cfg.std", [0.2, 0.0, 0.2], r"pretrained_cfg.std must be > 0"),
        ("pretrained_cfg.std", [-1, -1, -1], r"pretrained_cfg.std must be > 0"),
        ("pretrained_cfg.mean", [0.5, 0.5], r"pretrained_cfg.mean has 2 values for 3 input"),
        ("pretrained_cfg.input_size", [3, 0, 32], r"pretrained_cfg.input_size must be"),
        ("pretrained_cfg.input_size", [3, 10**6, 32], r"sides 1 .. 8192"),
        ("pretrained_cfg.input_size", "3x32x32", r"pretrained_cfg.input_size must be"),
    ]:
        attempt(f"config.json {field}={value!r}", load("cfg", variant(field, value)),
                error=HubError, match=pattern)
    attempt("num_classes=10**12 asked by the caller",
            lambda: zoo_core.build_model("zoonet_s", 10**12, "finetune"),
            error=InvalidArgumentError, match=r"above the limit of 1000000.*max_num_classes")

    lure = variant("zoo_core.plugin", "vision_extra")
    lure["zoo_core"]["distribution"] = "zoo-core-vision"
    attempt("plugin named by the repo (typosquatting lure)", load("lure", lure), error=HubError,
            match=r"'zoo-core-vision'.*not verified", absent=("pip install",))


# --------------------------------------------------------------------- registry.toml

PIN = '[weights.zoonet_s.mine]\nsource = "/srv/w.safetensors"\n'


@pytest.mark.parametrize("text,line,key,problem", [
    (b"[defaults]\nstrategy = 'auto'\n# caf\xe9\n", 3, None, "not UTF-8"),
    ("[defaults]\nstrategy = 'auto'\ncolour = 'red'\n", 3, "defaults.colour", "unknown key"),
    ("[defaults]\nstrategy = 'partial:0'\n", 2, "defaults.strategy", "must be >= 1"),
    (PIN + "num_classes = 0\n", 3, "weights.zoonet_s.mine.num_classes", "within 1 .. 1000000"),
    (PIN + "num_classes = -4\n", 3, "weights.zoonet_s.mine.num_classes", "within 1"),
    (PIN + "num_classes = 2000000\n", 3, "weights.zoonet_s.mine.num_classes", "max_num_classes"),
    (PIN + "label_names = 'cat'\n", 3, "weights.zoonet_s.mine.label_names", "list of strings"),
    (PIN + "label_names = 5\n", 3, "weights.zoonet_s.mine.label_names", "list of strings"),
    (PIN + "num_classes = 2\nlabel_names = ['a']\n", 4, "weights.zoonet_s.mine.label_names",
     "1 names but num_classes is 2"),
    (PIN + "license = 3\n", 3, "weights.zoonet_s.mine.license", "expected a string"),
    (PIN + "revision = 'main'\n", 3, "weights.zoonet_s.mine.revision", "only applies to hf-hub"),
    ('[weights.zoonet_s.mine]\nsource = "hf-hub:o/r"\nrevision = "../x"\n', 3,
     "weights.zoonet_s.mine.revision", "not a branch"),
    (PIN + "filename = '../../etc/passwd'\n", 3, "weights.zoonet_s.mine.filename", "no '..'"),
    (PIN + "filename = 'model.bin'\n", 3, "weights.zoonet_s.mine.filename", "safetensors only"),
    ("[limits]\nmax_num_classes = 0\n", 2, "limits.max_num_classes", "must be within"),
    ("[limits]\nmax_classes = 5\n", 2, "limits.max_classes", "unknown key"),
    ('[weights."zoonet_s".a]\nsource = "x"\n[weights."zoonet_s".b]\nsource = "y"\n'
     'filename = "x.pth"\n', 5, "weights.zoonet_s.b.filename", "safetensors only"),
])
def test_registry_toml_errors_name_file_line_key(tmp_path, monkeypatch, text, line, key,
                                                 problem):
    user = tmp_path / "user.toml"
    user.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    pattern = re.escape(f"{user}, line {line}: ") + (
        re.escape(f"key {key!r}: ") if key else "") + f".*{re.escape(problem)}"
    attempt(f"registry.toml: {problem}", load_catalog, error=ConfigError, match=pattern)


def test_registry_limit_is_settable(tmp_path, monkeypatch):
    user = tmp_path / "user.toml"
    user.write_text("[limits]\nmax_num_classes = 20\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    with pytest.raises(InvalidArgumentError, match="above the limit of 20"):
        zoo_core.build_model("zoonet_s", 21, "finetune")
    assert zoo_core.build_model("zoonet_s", 20, "finetune").head.out_features == 20


# --------------------------------------------------------------------- cache admin


def test_zoo_cache_verify_and_clean(tmp_path, bad_server, capsys):
    from zoo_core.cli import main

    body = st_bytes(tmp_path)
    bad_server.routes["/w.safetensors"] = _Spec(body)
    url = bad_server.url("/w.safetensors")
    good = fetch_weights(url, progress=False)
    bad_server.routes["/v.safetensors"] = _Spec(st_bytes(tmp_path, 3))
    bad = fetch_weights(bad_server.url("/v.safetensors"), progress=False)
    _flip_keep_stat(bad)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (good.parent / "planted.safetensors").symlink_to(victim)

    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert "BAD" in out and str(bad) in out and "planted.safetensors" in out
    assert "1 ok, 2 bad" in out
    assert main(["cache", "clean", "--dry-run"]) == 0
    assert bad.exists()
    assert main(["cache", "clean"]) == 0
    assert not bad.exists() and not os.path.lexists(good.parent / "planted.safetensors")
    assert victim.read_text() == "keep" and good.read_bytes() == body
    capsys.readouterr()
    assert main(["cache", "verify"]) == 0
    assert "1 ok, 0 bad" in capsys.readouterr().out


def test_import_of_the_new_modules_stays_light():
    code = ("import sys, zoo_core._weights, zoo_core._cache_admin, zoo_core._config_json, "
            "zoo_core._push_guard, zoo_core.cli\n"
            "heavy = [m for m in ('torch', 'huggingface_hub', 'safetensors', 'filelock') "
            "if m in sys.modules]\nassert not heavy, heavy")
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60,
                   env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
