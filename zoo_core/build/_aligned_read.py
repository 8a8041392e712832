"""Read a safetensors file with every tensor in its own 64-byte aligned storage.

Why: torch's CPU allocator hands out 64-byte aligned memory, so a model loaded by copying
(timm's and torchvision's loaders) has 64-byte aligned parameters. Tensors mapped from a
safetensors file sit wherever the file puts them (an int64 ``num_batches_tracked`` of 8
bytes shifts every later offset): oneDNN/MKL then take other kernel paths and the logits
differ in the last float32 bits (issue 19). :func:`read_aligned` gives every tensor its
own ``torch.empty`` storage (64-byte aligned, as a copying loader's) and fills them all
with a few ``preadv`` calls straight from the page cache (one system call per 1024
tensors, no second copy). One storage per tensor, not one shared buffer: tensors sharing a
storage cannot be saved by ``torch.save`` (different dtypes on one storage) nor by
``safetensors.torch.save_file`` ("tensors share memory"), which users call on a state
dict. :class:`Prefetch` runs it on a background thread.

It returns ``None`` (the caller then uses ``safetensors.torch.load_file``, which also
gives the right error for a broken file) for anything it does not handle itself: a header
it cannot parse or validate, a dtype it does not know, a short read.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
import threading

import torch

__all__ = ["ALIGN", "Prefetch", "read_aligned"]

ALIGN = 64  # torch's CPU allocator alignment (c10::gAlignment)
_IOV_MAX = 1024
_MAX_HEADER = 100_000_000
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


_Entry = tuple[str, torch.dtype, tuple[int, ...], int, int]
# Parsed layouts by the header's exact bytes: a repeat build of the same file skips the
# JSON parse (1-2 ms of GIL-holding work that competed with construction). Keyed by
# content, so a changed file can never get a stale layout.
_LAYOUTS: dict[bytes, list[_Entry] | None] = {}
_LAYOUTS_MAX = 16
_LAYOUT_CACHED_BYTES = 1 << 20  # (vit_large's header is 60 kB; a 100 MB one is not kept)


def _parsed_layout(raw: bytes) -> list[_Entry] | None:
    cached = _LAYOUTS.get(raw, False)
    if cached is not False:
        return cached
    try:
        header = json.loads(raw)
    except ValueError:
        return None
    entries = _layout(header) if isinstance(header, dict) else None
    if len(raw) <= _LAYOUT_CACHED_BYTES:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        _LAYOUTS[raw] = entries
    return entries


def _layout(header: dict) -> list[_Entry] | None:
    """(name, dtype, shape, file offset in the data section, nbytes), in file order."""
    entries = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(e, dict) or e.get("dtype") not in _DTYPES:
            return None
        shape, offs = e.get("shape"), e.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            return None
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
            return None
        dtype = _DTYPES[e["dtype"]]
        numel = 1
        for d in shape:
            numel *= d
        begin, end = offs
        if end - begin != numel * dtype.itemsize or begin < 0:
            return None
        entries.append((name, dtype, tuple(shape), begin, end - begin))
    entries.sort(key=lambda x: x[3])
    pos = 0
    for _, _, _, begin, nbytes in entries:  # contiguous, no gap, no overlap
        if begin != pos:
            return None
        pos += nbytes
    return entries


_HUGE = 2 << 20  # x86-64 / arm64 transparent huge page
_MADV_HUGEPAGE = 14


def _madvise_huge(ptr: int, length: int) -> None:
    """Ask for transparent huge pages: filling 100 MB of fresh memory then takes 512 times
    fewer page faults (resnet50's file: 71 ms instead of 212 ms on the 2-core dev box)."""
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _LIBC = libc
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.madvise(ptr, length, _MADV_HUGEPAGE)  # a refusal only costs speed


_LIBC = None if sys.platform.startswith("linux") else False


def _storage(dtype: torch.dtype, shape: tuple[int, ...], nbytes: int) -> torch.Tensor:
    """A fresh tensor of its own storage; big ones get transparent huge pages over the
    2 MiB-aligned part of their memory (filled on first touch, by the read)."""
    t = torch.empty(shape, dtype=dtype)
    if nbytes >= 2 * _HUGE and _LIBC is not False:
        start = -t.data_ptr() % _HUGE
        _madvise_huge(t.data_ptr() + start, (nbytes - start) // _HUGE * _HUGE)
    return t


class _Plan:
    """An open file, its tensors' fresh storages and the preadv targets: what
    :func:`_plan` sets up (Python and torch calls, holding the GIL) so that
    :meth:`fill` is system calls and page faults only."""

    def __init__(self, fd: int, entries: list[_Entry], tensors: list[torch.Tensor],
                 iov: list, offset: int) -> None:
        self.fd, self.entries, self.tensors, self.iov, self.offset = (
            fd, entries, tensors, iov, offset)

    def fill(self) -> dict[str, torch.Tensor] | None:
        """Read the data into the storages and close the file; ``None`` on a short read."""
        try:
            offset = self.offset
            for i in range(0, len(self.iov), _IOV_MAX):
                chunk = self.iov[i:i + _IOV_MAX]
                want = sum(len(b) for b in chunk)
                if os.preadv(self.fd, chunk, offset) != want:
                    return None  # short read (file changed under us): let safetensors decide
                offset += want
        except OSError:
            return None
        finally:
            self.close()
        return {e[0]: t for e, t in zip(self.entries, self.tensors, strict=True)}

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _plan(path: str) -> _Plan | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        prefix = os.pread(fd, 8, 0)
        if len(prefix) != 8:
            raise _Unhandled
        (hlen,) = struct.unpack("<Q", prefix)
        if hlen > min(_MAX_HEADER, size - 8):
            raise _Unhandled
        entries = _parsed_layout(os.pread(fd, hlen, 8))
        if entries is None or 8 + hlen + sum(e[4] for e in entries) != size:
            raise _Unhandled
        tensors = [_storage(dtype, shape, nbytes) for _, dtype, shape, _, nbytes in entries]
        if any(t.data_ptr() % ALIGN for t in tensors if t.numel()):
            raise _Unhandled  # never with torch's allocator; do not guess
        # writable views of each storage's bytes for preadv: ctypes arrays at the data
        # pointers (``tensors`` keeps the memory alive), no torch call per tensor
        iov = [(ctypes.c_char * e[4]).from_address(t.data_ptr())
               for e, t in zip(entries, tensors, strict=True) if e[4]]
        return _Plan(fd, entries, tensors, iov, 8 + hlen)
    except (OSError, _Unhandled):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise


class _Unhandled(Exception):
    """Internal: a file :func:`read_aligned` leaves to safetensors."""


def read_aligned(path: str) -> dict[str, torch.Tensor] | None:
    """The file's tensors, each in its own 64-byte aligned CPU storage; or ``None``."""
    plan = _plan(path)
    return None if plan is None else plan.fill()


class Prefetch:
    """:func:`read_aligned` with the read on a background thread; :meth:`result` waits.

    The fast build reads the file while the architecture is constructed on ``meta``. The
    storages are allocated here, in the calling thread (a millisecond or two): the thread
    then only makes system calls and takes page faults, without the GIL, instead of
    handing the GIL back and forth with construction for every tensor it allocates.
    """

    def __init__(self, path: str) -> None:
        self._out: dict[str, torch.Tensor] | None = None
        self._thread: threading.Thread | None = None
        if not os.path.isfile(path):  # (a FIFO would block in open())
            return
        try:
            plan = _plan(path)
        except Exception:  # noqa: BLE001 - e.g. no memory for the storages: the caller
            plan = None  # then maps the file, and reports a broken one properly
        if plan is None:
            return
        try:
            self._thread = threading.Thread(
                target=self._run, args=(plan,), name="zoo_core-read-weights", daemon=True)
            self._thread.start()
        except BaseException:
            self._thread = None
            plan.close()
            raise

    def _run(self, plan: _Plan) -> None:
        try:
            self._out = plan.fill()
        except Exception:  # noqa: BLE001 - the caller then maps the file
            self._out = None

    def result(self) -> dict[str, torch.Tensor] | None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        out, self._out = self._out, None
        return out
