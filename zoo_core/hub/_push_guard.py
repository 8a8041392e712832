"""A push is bounded in time and leaves nothing behind.

* :func:`push_timeout` gives huggingface_hub's shared HTTP client a timeout for the
  duration of a push (it has none by default, so a server that never answers the commit
  would be waited for forever). ``ZOO_CORE_PUSH_TIMEOUT`` seconds, default 60: the most a
  push waits for any one answer or socket operation. huggingface_hub retries a timed-out
  commit up to 5 times (1+2+4+8+8 s apart), so a dead server ends a push after about
  6 x timeout + 23 s.
* :func:`push_tmpdir` names the temporary copy of a pushed model
  ``$TMPDIR/zoo-push-<pid>-*``; :func:`sweep_push_leftovers` removes those of processes
  that no longer run (a push killed with SIGKILL cannot clean up after itself). It runs at
  the start of every push and in ``zoo cache clean``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from zoo_core.errors import InvalidArgumentError

__all__ = ["ENV_PUSH_TIMEOUT", "push_timeout", "push_timeout_s", "push_tmpdir",
           "sweep_push_leftovers"]

ENV_PUSH_TIMEOUT = "ZOO_CORE_PUSH_TIMEOUT"
PREFIX = "zoo-push-"
_NAME = re.compile(rf"{PREFIX}(\d+)-")
_STALE_WITHOUT_PID_S = 24 * 3600
_LOCK = threading.Lock()


def push_timeout_s() -> float:
    raw = os.environ.get(ENV_PUSH_TIMEOUT, "").strip()
    if not raw:
        return 60.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise InvalidArgumentError(f"{ENV_PUSH_TIMEOUT}={raw!r} is not a positive number of "
                                   "seconds; fix or unset it")
    return value


@contextlib.contextmanager
def push_timeout() -> Iterator[float]:
    """Give huggingface_hub's shared client a timeout while the block runs."""
    seconds = push_timeout_s()
    from huggingface_hub.utils import get_session

    with _LOCK:
        session = get_session()
        before = session.timeout
        session.timeout = type(before)(seconds)
    try:
        yield seconds
    finally:
        with _LOCK:
            session.timeout = before


def push_tmpdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")


def _uid(default: int) -> int:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else default


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_push_leftovers(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove ``zoo-push-*`` directories of dead processes (ours only); return them."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(base.glob(f"{PREFIX}*"))
    except OSError:
        return removed
    for entry in entries:
        try:
            st = os.lstat(entry)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != _uid(st.st_uid):
            continue  # never a link, never another user's directory
        match = _NAME.match(entry.name)
        if match:
            if _alive(int(match.group(1))):
                continue
        elif time.time() - st.st_mtime < _STALE_WITHOUT_PID_S:
            continue  # an older-style name: only when clearly abandoned
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed
