"""File operations for a cache that other users may be able to write into.

Everything zoo_core creates or rewrites in its download cache goes through here:

* files are opened with ``O_NOFOLLOW``; a temp file is created with ``O_EXCL``; a file that
  is a symlink, not a regular file, or hard-linked elsewhere is refused with a message that
  says why (a planted link would make a download overwrite its target);
* cache directories are created ``0700`` unless the user configured a shared cache
  (``ZOO_CORE_CACHE_SHARED=1``: then the umask decides, as for any directory);
* the per-entry lock is an ``flock`` on a file opened the same way (``filelock`` opens its
  lock file with ``O_TRUNC`` and follows links);
* a full disk or a file-size limit becomes a :class:`WeightsError` naming the directory and
  the space needed.

Only the standard library is imported.

>>> is_disk_full(OSError(28, "No space left on device"))
True
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from zoo_core.errors import InvalidArgumentError, WeightsError

__all__ = [
    "ENV_SHARED",
    "disk_full_error",
    "is_disk_full",
    "locked",
    "make_dirs",
    "open_read",
    "open_write",
    "refuse_link",
    "shared_cache",
]

ENV_SHARED = "ZOO_CORE_CACHE_SHARED"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_LOCK_POLL_S = 0.1


def shared_cache() -> bool:
    """Whether the user declared the cache shared between accounts (``ZOO_CORE_CACHE_SHARED``)."""
    value = os.environ.get(ENV_SHARED, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise InvalidArgumentError(f"{ENV_SHARED}={value!r}: use 1 (shared cache) or 0")


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with mode 0700 for the directories it creates (unless shared)."""
    mode = 0o777 if shared_cache() else 0o700
    missing = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):  # each one we create gets the mode (umask applies)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=mode)
    if path.is_symlink():
        raise WeightsError(f"cache directory {path} is a symlink; zoo_core does not follow "
                           "links inside its cache. Remove it (`zoo cache clean`)")


_UMASK_LOCK = threading.Lock()


def as_output_file(path: Path | str) -> None:
    """Give a written output file the mode any new file gets (0666 less the umask).

    safetensors writes its files 0600 and ``mkstemp`` makes them 0600; output files (a
    converted checkpoint, a run's weights) should be as readable as the run's other
    files, for the group too where the umask allows.
    """
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        umask = os.umask(0o077)
        os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def refuse_link(path: Path, what: str) -> bool:
    """Raise if ``path`` exists and is a symlink or not a regular file; return whether it exists."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        raise WeightsError(
            f"{what} {path} is a symlink (to {target}); zoo_core never follows links in its "
            "cache, since writing through one would overwrite the target. Someone with write "
            f"access to {path.parent} planted it: remove it (`zoo cache clean`) and check who "
            "can write there")
    if not stat.S_ISREG(st.st_mode):
        raise WeightsError(
            f"{what} {path} is not a regular file ({_kind(st.st_mode)}); remove it "
            "(`zoo cache clean`)")
    return True


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"


def _check_fd(fd: int, path: Path, what: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise WeightsError(f"{what} {path} is not a regular file ({_kind(st.st_mode)}); "
                           "remove it (`zoo cache clean`)")
    if st.st_nlink > 1:
        raise WeightsError(
            f"{what} {path} has {st.st_nlink} hard links; zoo_core never writes a cache file "
            "that is also another file. Remove it (`zoo cache clean`) and check who can write "
            f"to {path.parent}")


def _open(path: Path, flags: int, what: str, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path, what)  # raises with the reason
        raise


def open_read(path: Path, what: str) -> IO[bytes]:
    """Open a cache file for reading without following links; refuse non-regular files."""
    refuse_link(path, what)
    fd = _open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0), what)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WeightsError(f"{what} {path} is not a regular file ({_kind(st.st_mode)})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_write(path: Path, what: str, *, append: bool = False) -> IO[bytes]:
    """Open a cache temp file for writing.

    ``append=False`` unlinks whatever is at ``path`` (never writing through it) and creates
    a fresh file exclusively; ``append=True`` reopens our own earlier temp file, refusing
    links, non-regular files and files with other hard links.
    """
    if append:
        refuse_link(path, what)
        fd = _open(path, os.O_WRONLY | os.O_APPEND, what)
    else:
        refuse_link(path, what)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what)
    try:
        _check_fd(fd, path, what)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def locked(path: Path, *, on_wait: Any = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created without following links)."""
    refuse_link(path, "lock file")
    fd = _open(path, os.O_RDWR | os.O_CREAT, "lock file")
    try:
        _check_fd(fd, path, "lock file")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: filelock's msvcrt lock
            os.close(fd)
            fd = -1
            from filelock import FileLock

            with FileLock(str(path)):
                yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            while True:  # poll, so that a KeyboardInterrupt is never stuck in flock()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if fd >= 0:
            os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def disk_full_error(exc: OSError, directory: Path, needed: int | None, what: str,
                    fix: str) -> WeightsError:
    """A full disk (or ``ulimit -f``) as an error naming the directory and the space needed."""
    free = None
    with contextlib.suppress(OSError):
        vfs = os.statvfs(directory)
        free = vfs.f_bavail * vfs.f_frsize
    need = f"needs {_size(needed)}" if needed else "needs more space"
    have = f", {_size(free)} free" if free is not None else ""
    return WeightsError(
        f"no space to write {what} in {directory} ({need}{have}; {os.strerror(exc.errno)}, "
        f"errno {exc.errno}). {fix}")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover
