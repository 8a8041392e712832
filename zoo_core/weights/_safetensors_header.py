r"""The structural check of a safetensors file, without reading its tensor data.

:func:`check_safetensors` reads the 8-byte header length and the JSON header only,
validates every tensor entry (dtype, shape, contiguous data offsets) and compares the file
size with the header's promise, so a truncated download, a pickle in disguise or a header
bomb is refused before anything is mapped. Tensor names from a file are shown escaped
(:func:`printable`): a name is data, never terminal control codes.

>>> printable("fc.weight\x1b[2J")
'fc.weight\\x1b[2J'
"""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

from zoo_core.errors import WeightsError

__all__ = ["CONVERT_HINT", "MAX_HEADER_BYTES", "check_safetensors", "is_pickle_path", "label",
           "pickle_refusal", "printable"]

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pth.tar")

CONVERT_HINT = (
    "zoo_core loads safetensors only (unpickling a checkpoint can run arbitrary code). "
    "Convert it once with `zoo convert IN OUT` (or `zoo_core.convert_checkpoint(IN, OUT)`) "
    "and point the source at OUT"
)

MAX_HEADER_BYTES = 100_000_000  # same limit as the safetensors library
_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}



def printable(name: object) -> str:
    """``name`` with control and other non-printable characters escaped (``\\x1b``)."""
    text = str(name)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_pickle_path(source: str) -> bool:
    """Whether a source *names* a pickled checkpoint (by its suffix; URLs by their path).

    >>> is_pickle_path("weights/model.safetensors"), is_pickle_path("ckpt.PT")
    (False, True)
    >>> is_pickle_path("https://example.com/resnet50.pth?download=1")
    True
    """
    text = str(source).strip()
    if "://" in text:
        try:
            text = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        except ValueError:  # a malformed URL: judged by its text
            pass
    return text.rstrip("/").lower().endswith(PICKLE_SUFFIXES)


def label(path: Path | str, name: str | None) -> str:
    return f"{name} ({path})" if name and str(name) != str(path) else str(path)


def pickle_refusal(label: str, what: str) -> WeightsError:
    return WeightsError(f"{label} {what}, not safetensors. {CONVERT_HINT}.")


# Files that passed :func:`check_safetensors`, by (device, inode, size, mtime, ctime): a
# repeat build in the same process skips re-reading and re-parsing the header (2 ms for
# resnet50). Any write to the file changes its ctime (which no one can set back), so a
# changed file is checked again; a key is only trusted once its ctime is older than
# _RACY_S, the "racily clean" rule of git: a filesystem's timestamp granularity (a jiffy
# on ext4) could otherwise hide a second same-size write right after the check.
_CHECKED: set[tuple[int, int, int, int, int]] = set()
_CHECKED_LOCK = threading.Lock()
_CHECKED_MAX = 1024
_RACY_S = 2.0


def _checked_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember_checked(st: os.stat_result) -> None:
    if time.time_ns() - st.st_ctime_ns < _RACY_S * 1e9:
        return  # written just now: a same-size rewrite could keep this key
    with _CHECKED_LOCK:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED.add(_checked_key(st))


def check_safetensors(path: str | os.PathLike[str], *, name: str | None = None) -> None:
    """Check that ``path`` is a complete, well-formed safetensors file; raise ``WeightsError``.

    Reads only the 8-byte header length and the JSON header, validates every tensor entry
    (dtype, shape, contiguous data offsets) and compares the file size with
    ``8 + header_len + end of the last tensor``, so a truncated download is detected
    without reading the tensor data. ``name`` (e.g. the URL) is added to messages.
    """
    path = Path(path)
    shown = label(path, name)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block in open()
            raise WeightsError(
                f"{shown} is not a regular file (a directory, FIFO, socket or device); "
                "point the weights source at a .safetensors file")
        if _checked_key(st) in _CHECKED:
            return  # this very file passed before and was not written since
        size = st.st_size
        with open(path, "rb") as fh:
            prefix = fh.read(9)
            if len(prefix) < 9:
                _raise_bad_prefix(shown, prefix, size)
            (header_len,) = struct.unpack("<Q", prefix[:8])
            if prefix[8:9] == b"{" and header_len > MAX_HEADER_BYTES:
                raise WeightsError(
                    f"{shown} is not a usable safetensors file: header too large "
                    f"({header_len} bytes, limit {MAX_HEADER_BYTES}); it is corrupt or "
                    "hostile: delete it and fetch it again")
            if prefix[8:9] != b"{" or header_len > size - 8:
                if prefix[8:9] == b"{":
                    raise WeightsError(
                        f"{shown} is truncated: its safetensors header alone is {header_len} "
                        f"bytes but the file has only {size} bytes; delete it and fetch it again"
                    )
                _raise_bad_prefix(shown, prefix, size)
            fh.seek(8)
            raw = fh.read(header_len)
    except OSError as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"cannot read weights file {shown}: {exc}") from exc

    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"{shown} is not a valid safetensors file: its header is not JSON ({exc})"
        ) from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{shown} is not a valid safetensors file: header is not an object")

    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
            ):
                raise WeightsError(
                    f"{shown} is not a valid safetensors file: __metadata__ must map str to str"
                )
            continue
        spans.append(_check_entry(shown, key, entry))

    spans.sort()
    expected_start = 0
    for begin, end, key in spans:
        if begin != expected_start:
            raise WeightsError(
                f"{shown} is not a valid safetensors file: tensor {key!r} starts at byte "
                f"{begin} of the data section, expected {expected_start} (overlap or gap)"
            )
        expected_start = end
    expected_size = 8 + header_len + expected_start
    if size < expected_size:
        raise WeightsError(
            f"{shown} is truncated: header promises {expected_size} bytes but the file has "
            f"{size}; delete it and fetch it again"
        )
    if size > expected_size:
        raise WeightsError(
            f"{shown} is not a valid safetensors file: {size - expected_size} unexpected "
            f"trailing bytes after the last tensor (expected {expected_size} bytes, got {size})"
        )
    _remember_checked(st)


def _raise_bad_prefix(label: str, prefix: bytes, size: int) -> NoReturn:
    if prefix.startswith(b"PK\x03\x04"):
        raise pickle_refusal(label, "is a zip archive (a torch.save checkpoint)")
    if prefix[:1] == b"\x80" and len(prefix) > 1 and 1 <= prefix[1] <= 5:
        raise pickle_refusal(label, "is a Python pickle (a legacy torch.save checkpoint)")
    if size == 0:
        raise WeightsError(f"{label} is empty; delete it and fetch it again")
    if size < 9:
        raise WeightsError(
            f"{label} is truncated or not a safetensors file ({size} bytes); "
            "delete it and fetch it again"
        )
    raise WeightsError(
        f"{label} is not a safetensors file (it does not start with an 8-byte header length "
        "followed by a JSON header); if it is a PyTorch checkpoint, "
        f"{CONVERT_HINT[0].lower()}{CONVERT_HINT[1:]}"
    )


def _check_entry(label: str, key: str, entry: Any) -> tuple[int, int, str]:
    def bad(reason: str) -> WeightsError:
        return WeightsError(f"{label} is not a valid safetensors file: tensor {key!r}: {reason}")

    if not isinstance(entry, dict):
        raise bad("entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad("missing dtype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise bad(f"bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise bad(f"bad data_offsets {offsets!r}")
    begin, end = offsets
    bits = _DTYPE_BITS.get(dtype)
    if bits is not None:  # unknown (newer) dtypes: offsets are still checked
        numel = 1
        for d in shape:
            numel *= d
        if numel * bits != (end - begin) * 8:
            raise bad(
                f"{dtype}{tuple(shape)} needs {numel * bits / 8:g} bytes but data_offsets "
                f"span {end - begin}"
            )
    return begin, end, key

