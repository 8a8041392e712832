"""sha256 of files, and an in-process memo that any write to the file invalidates.

The memo is keyed on ``(path, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``. The
ctime cannot be set from user space (``os.utime`` sets atime and mtime only) and every
write, truncate, chmod or rename changes it, so a file flipped in place with its size and
mtime restored is hashed again. The same key guards the download cache's sidecars.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
>>> _ = p.write_bytes(b"abc")
>>> file_digest(p)[:16]
'ba7816bf8f01cfea'
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

__all__ = ["DIGESTS", "file_digest", "sha256_file", "stat_key"]

CHUNK = 1 << 20

# In-process memo of local-file digests: (path, *stat_key) -> sha256.
DIGESTS: dict[tuple[object, ...], str] = {}
_DIGESTS_LOCK = threading.Lock()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What any change to a file's content changes: device, inode, size, mtime and ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_digest(path: Path) -> str:
    """sha256 of a local file, memoised in-process by path and :func:`stat_key`."""
    key = (str(path), *stat_key(os.stat(path)))
    with _DIGESTS_LOCK:
        cached = DIGESTS.get(key)
    if cached is not None:
        return cached
    digest = sha256_file(path)
    if (str(path), *stat_key(os.stat(path))) == key:  # unchanged while we read it
        with _DIGESTS_LOCK:
            DIGESTS[key] = digest
    return digest


_GIT_SHA1: dict[tuple[object, ...], str] = {}


def file_git_sha1(path: Path) -> str:
    """git's blob id of a file (``sha1("blob <size>\\0" + content)``), memoised like
    :func:`file_digest`: the name of a non-LFS blob in the Hugging Face cache."""
    st = os.stat(path)
    key = (str(path), *stat_key(st))
    with _DIGESTS_LOCK:
        cached = _GIT_SHA1.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha1(f"blob {st.st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    value = digest.hexdigest()
    with _DIGESTS_LOCK:
        _GIT_SHA1[key] = value
    return value
