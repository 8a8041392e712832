"""Bad inputs against the weights cache, the downloader and weights loading (issue 11).

Each one goes through :func:`adversary.attempt`, which counts it; the session prints the
tally. Servers are local (127.0.0.1): :class:`adversary.BadServer`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from adversary import REPO_ROOT, Route, attempt, entry_dir, flip_keep_stat, isolate, sha, st_bytes
from safetensors.torch import save_file

import zoo_core
from zoo_core.errors import HubError, InvalidArgumentError, WeightsError
from zoo_core.weights import _download
from zoo_core.weights._weights import cache_dir, fetch_weights


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)


# ------------------------------------------------------------------ data loss: links


def test_planted_links_in_the_cache_are_refused_never_written_through(tmp_path, bad_server):
    body = st_bytes(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data\n" * 100)
    url = bad_server.url("/w.safetensors")
    bad_server.routes["/w.safetensors"] = Route(body)
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
    bad_server.routes["/w.safetensors"] = Route(st_bytes(tmp_path))
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


def test_flipped_byte_in_cache_is_found_pinned_or_not(tmp_path, bad_server):
    body = st_bytes(tmp_path)
    bad_server.routes["/w.safetensors"] = Route(body)
    url = bad_server.url("/w.safetensors")
    path = fetch_weights(url, sha256=sha(body), progress=False)
    side = path.with_name(path.name + ".sha256")
    recorded = json.loads(side.read_text())["sha256"]

    flip_keep_stat(path)
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
    bad_server.routes["/w.safetensors"] = Route(body)
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 0xFF]))
    side.write_text(json.dumps({"sha256": recorded, "stat": [0, 0, 0, 0, 0]}))
    assert fetch_weights(url, progress=False).read_bytes() == body
    assert json.loads(side.read_text())["sha256"] == recorded

    from zoo_core.cli.cache import verify_cache

    flip_keep_stat(path)
    report = verify_cache()
    assert [p for p, _ in report.bad] == [path] and "changed" in report.bad[0][1]


def test_resume_without_validator_starts_over_never_splices(tmp_path, bad_server):
    a, b = st_bytes(tmp_path, 1), st_bytes(tmp_path, 2)
    assert len(a) == len(b)
    spec = Route(a, etag=False, drop_at=len(a) // 2)
    bad_server.routes["/w.safetensors"] = spec
    url = bad_server.url("/w.safetensors")
    _download._MAX_ATTEMPTS, saved = 1, _download._MAX_ATTEMPTS
    try:
        with pytest.raises(WeightsError, match="is kept"):
            fetch_weights(url, progress=False)
    finally:
        _download._MAX_ATTEMPTS = saved
    bad_server.routes["/w.safetensors"] = Route(b, etag=False)  # the file changed meanwhile
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
    bad_server.routes["/w.safetensors"] = Route(body)
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
    bad_server.routes["/slow.safetensors"] = Route(body, trickle_s=0.3)
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

    bad_server.routes["/hang.safetensors"] = Route(body, hang=True)
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
    bad_server.routes["/slow.safetensors"] = Route(body)
    assert fetch_weights(url, progress=False).read_bytes() == body
    assert bad_server.log[-1][1] == f"bytes={grown}-"

# -------------------------------------------------------------------------- full disk

FULL_DISK = r'''
import json, os, resource, sys
url, work = sys.argv[1], sys.argv[2]
import torch, zoo_core
from zoo_core.weights._weights import convert_checkpoint, fetch_weights
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
    bad_server.routes["/big.safetensors"] = Route(body)
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


# --------------------------------------------------------------------- cache admin


def test_zoo_cache_verify_and_clean(tmp_path, bad_server, capsys):
    from zoo_core.cli import main

    body = st_bytes(tmp_path)
    bad_server.routes["/w.safetensors"] = Route(body)
    url = bad_server.url("/w.safetensors")
    good = fetch_weights(url, progress=False)
    bad_server.routes["/v.safetensors"] = Route(st_bytes(tmp_path, 3))
    bad = fetch_weights(bad_server.url("/v.safetensors"), progress=False)
    flip_keep_stat(bad)
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
    code = ("import sys, zoo_core.weights._weights, zoo_core.cli.cache, "
            "zoo_core.saved._config_json, "
            "zoo_core.hub._push_guard, zoo_core.cli\n"
            "heavy = [m for m in ('torch', 'huggingface_hub', 'safetensors', 'filelock') "
            "if m in sys.modules]\nassert not heavy, heavy")
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60,
                   env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
