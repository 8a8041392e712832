"""zoo_core.weights._weights: pickle refusal, convert_checkpoint, published pickles.

Everything is local: URLs are served by a ThreadingHTTPServer on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch
from safetensors.torch import load_file
from weights_fixtures import cache_files, full_gets, isolated_cache, local_http_server, tiny_tensors  # noqa: F401  (fixtures)

from zoo_core.errors import WeightsError
from zoo_core.weights._weights import (
    check_safetensors,
    convert_checkpoint,
    fetch_weights,
    is_pickle_path,
    sha256_file,
)


class Custom:
    """A non-tensor object that weights_only=True must refuse."""

    def __init__(self) -> None:
        self.value = 3


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
