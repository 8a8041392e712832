"""zoo_core.weights._weights: local sources, cache dir, structural integrity checks.

Over HTTP: test_weights_download.py; pickles and conversion: test_weights_pickles.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from weights_fixtures import REPO_ROOT, isolated_cache, write_st  # noqa: F401  (fixtures)

from zoo_core.errors import InvalidArgumentError, WeightsError
from zoo_core.weights._weights import (
    cache_dir,
    check_safetensors,
    fetch_weights,
    sha256_file,
)

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


def test_import_does_not_pull_torch():
    code = (
        "import sys, zoo_core.weights._weights, zoo_core; "
        "assert 'torch' not in sys.modules, 'torch'"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
