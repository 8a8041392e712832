"""zoo_core.build._aligned_read: every tensor 64-byte aligned, equal to the file's."""

from __future__ import annotations

import json
import struct

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from zoo_core.build._aligned_read import read_aligned  # noqa: E402


def _tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 5, generator=g),  # 60 bytes: shifts what follows
        "a.num_batches_tracked": torch.tensor(7),  # 0-dim int64, 8 bytes
        "b.half": torch.randn(7, generator=g).half(),
        "b.bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "c.mask": torch.tensor([True, False, True]),
        "c.empty": torch.zeros(0, 4),
        "d.double": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "e.u8": torch.arange(5, dtype=torch.uint8),
    }


def test_tensors_equal_the_file_and_are_aligned(tmp_path):
    path = str(tmp_path / "w.safetensors")
    safetensors_torch.save_file(_tensors(), path, metadata={"format": "pt"})
    mapped = safetensors_torch.load_file(path)
    assert any(v.data_ptr() % 64 for v in mapped.values() if v.numel())  # the trigger
    got = read_aligned(path)
    assert got is not None and set(got) == set(mapped)
    for k, v in mapped.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(got[k], v), k
        assert got[k].data_ptr() % 64 == 0 or got[k].numel() == 0, k


def _raw(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize(
    "content",
    [
        b"",  # empty
        b"\x80\x02}q\x00.",  # a pickle
        _raw({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),  # short
        _raw({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12),  # long
        _raw({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),  # shape
        _raw({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\0"),  # dtype
        _raw({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),  # gap
        _raw({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
        _raw([1, 2], b""),  # header not an object
        struct.pack("<Q", 10**12) + b"{}",  # header length beyond the file
    ],
)
def test_what_it_does_not_handle_is_left_to_safetensors(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert read_aligned(str(path)) is None


def test_missing_file_is_left_to_the_caller(tmp_path):
    assert read_aligned(str(tmp_path / "none.safetensors")) is None


def test_large_tensors_read_right(tmp_path):
    """Tensors over 4 MiB (madvised for transparent huge pages) read like the small."""
    g = torch.Generator().manual_seed(0)
    tensors = {f"w{i}": torch.randn(1000 + i, 300, generator=g) for i in range(5)}
    tensors["n"] = torch.tensor(3)
    path = str(tmp_path / "big.safetensors")
    safetensors_torch.save_file(tensors, path)
    got = read_aligned(path)
    assert got is not None
    for k, v in tensors.items():
        assert torch.equal(got[k], v), k
        assert got[k].data_ptr() % 64 == 0


def test_prefetch_gives_what_read_aligned_gives(tmp_path):
    from zoo_core.build._aligned_read import Prefetch

    path = str(tmp_path / "w.safetensors")
    safetensors_torch.save_file(_tensors(), path)
    got = Prefetch(path).result()
    assert got is not None and all(torch.equal(got[k], v) for k, v in _tensors().items())
    assert Prefetch(str(tmp_path / "none.safetensors")).result() is None


def test_tensors_do_not_share_an_autograd_version_counter(tmp_path):
    """An in-place update of one (BatchNorm's running stats) must not bump the others."""
    path = str(tmp_path / "w.safetensors")
    safetensors_torch.save_file(_tensors(), path)
    got = read_aligned(path)
    before = got["a.weight"]._version
    got["b.half"].add_(1)
    got["d.double"].mul_(2)
    assert got["a.weight"]._version == before
    assert not got["a.weight"]._is_view()


def test_each_tensor_has_its_own_storage_so_users_can_save_them(tmp_path):
    """torch.save refuses storages viewed as two dtypes, safetensors' save_file refuses
    shared memory: a state dict of what the reader gives must save with both."""
    path = str(tmp_path / "w.safetensors")
    safetensors_torch.save_file(_tensors(), path)
    got = read_aligned(path)
    ptrs = [t.untyped_storage().data_ptr() for t in got.values() if t.numel()]
    assert len(set(ptrs)) == len(ptrs)
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size()
               for t in got.values())
    torch.save(got, tmp_path / "w.pt")
    safetensors_torch.save_file(got, str(tmp_path / "again.safetensors"))
    back = safetensors_torch.load_file(str(tmp_path / "again.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in _tensors().items())


def test_a_fast_built_models_state_dict_saves_with_torch_and_safetensors(tmp_path):
    """The user's next step after build_model: save the state dict (found by
    tests/cli/test_cli.py::test_convert_then_build_from_converted when the reader put
    every tensor on one shared buffer)."""
    import zoo_core

    ref = zoo_core.build_model("zoonet_s", 5, "scratch")
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file(ref.state_dict(), str(path))
    model = zoo_core.build_model("zoonet_s", 5, "finetune", weights=str(path))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    safetensors_torch.save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())


def test_parsed_layouts_are_kept_by_content_and_bounded(tmp_path, monkeypatch):
    """A repeat read reuses the parsed header; a file rewritten with other tensors gets
    its own layout (the key is the header's bytes), and a huge header is not kept."""
    from zoo_core.build import _aligned_read

    path = str(tmp_path / "w.safetensors")
    safetensors_torch.save_file({"a": torch.arange(4.0)}, path)
    assert torch.equal(read_aligned(path)["a"], torch.arange(4.0))
    assert any(b'"a"' in raw for raw in _aligned_read._LAYOUTS)
    safetensors_torch.save_file(
        {"a": torch.arange(6.0), "b": torch.ones(2, dtype=torch.int64)}, path)
    got = read_aligned(path)
    assert torch.equal(got["a"], torch.arange(6.0)) and torch.equal(got["b"], torch.ones(2))
    monkeypatch.setattr(_aligned_read, "_LAYOUT_CACHED_BYTES", 8)
    _aligned_read._LAYOUTS.clear()
    assert torch.equal(read_aligned(path)["a"], torch.arange(6.0))
    assert not _aligned_read._LAYOUTS
