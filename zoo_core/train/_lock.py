"""One run at a time per run folder: ``OUT/.zoo-run.lock``, held while a run writes OUT.

The lock is an advisory ``flock`` on the file, which the kernel drops when its process
ends however it ends (``kill -9`` included), so a lock left by a dead process is simply
taken over; there is no stale state to clean up. The holder writes its pid into the file
so that a refused second run can name it. On release the file is removed (before the
descriptor is closed); a contender that opened the old file re-checks that the path still
names the file it locked and otherwise tries again. Where ``fcntl`` does not exist
(Windows) the ``filelock`` package locks a sibling file instead (no pid to name).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo_core.errors import ZooError

LOCK_FILE = ".zoo-run.lock"


class RunLockedError(ZooError, RuntimeError):
    """Another live process is writing the same run folder."""


class RunLock:
    """``with RunLock(out_dir): ...`` (or :meth:`acquire` / :meth:`release`)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self._fd: int | None = None
        self._fallback: Any = None
        self._created = False

    def acquire(self) -> None:
        self._created = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZooError(f"cannot create the run folder {self.out_dir} "
                           f"({type(exc).__name__}: {exc}); choose another --out") from exc
        try:
            import fcntl
        except ImportError:  # pragma: no cover  (Windows)
            self._acquire_filelock()
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ZooError(f"cannot create the lock file {self.path} "
                               f"({type(exc).__name__}: {exc})") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                raise RunLockedError(
                    f"{self.out_dir} is in use by another run (pid {holder or 'unknown'}, "
                    f"lock {self.path}); two runs into one folder would mix their files. "
                    "Wait for that run to end (or stop it), or choose another --out"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _acquire_filelock(self) -> None:  # pragma: no cover  (Windows)
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path) + ".flock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunLockedError(f"{self.out_dir} is in use by another run; wait for it to "
                                 "end, or choose another --out") from None
        self._fallback = lock

    def release(self) -> None:
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._fallback is not None:  # pragma: no cover  (Windows)
            self._fallback.release()
            self._fallback = None
        if self._created:
            try:
                self.out_dir.rmdir()  # only if the failed run left it empty
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


@contextlib.contextmanager
def held_run_lock(ctx: Any, out: Path | None) -> Iterator[None]:
    """Hold ``out``'s run lock (rank 0) for the whole run; every rank learns a refusal."""
    lock = RunLock(out) if out is not None and ctx.main else None
    refused = None
    if lock is not None:
        try:
            lock.acquire()
        except ZooError as exc:
            refused = exc
    message = ctx.broadcast(str(refused) if refused is not None else None) \
        if out is not None else None
    if refused is not None:
        raise refused
    if message:
        raise RunLockedError(message)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
