"""zoo_core's download cache: where URL downloads live, and proof that they are unchanged.

Layout::

    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>          verified file
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.sha256   sidecar (JSON)
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.part     download in progress
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.part.meta  its ETag
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.lock     per-entry lock

The sidecar records the file's sha256 with its :func:`~zoo_core.weights._digests.stat_key`
(device, inode, size, mtime, ctime). A cache hit trusts the recorded digest only while the
key is unchanged; any write to the file changes its ctime, so the file is hashed again and
compared with the recorded digest (and with the pin): a flipped byte is found, never
recorded as the new truth. An entry without a sidecar is not known to be complete and is
downloaded again.

Cached files are only ever *replaced by rename* (``os.replace``) or unlinked, never
rewritten or truncated in place: tensors loaded from them may be mmap'd by a running
process, and truncating a mapped file under it would kill that process with SIGBUS.
Nothing in the cache is opened through a symlink (:mod:`zoo_core._safefs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from zoo_core._safefs import (
    disk_full_error,
    is_disk_full,
    locked,
    make_dirs,
    open_read,
    refuse_link,
)
from zoo_core.errors import ConfigError, WeightsError
from zoo_core.weights._digests import file_digest, sha256_file, stat_key
from zoo_core.weights._download import check_url, download, redact_url
from zoo_core.weights._safetensors_header import check_safetensors, is_pickle_path, pickle_refusal

__all__ = [
    "cache_dir",
    "entry_problem",
    "fetch_published_pickle",
    "fetch_url",
    "known_sha256",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
]

logger = logging.getLogger("zoo_core.weights")

_MAX_SIDECAR_BYTES = 64 * 1024


def cache_dir() -> Path:
    """Root of zoo_core's download cache (not created here).

    ``$ZOO_CORE_CACHE`` if set, else ``$XDG_CACHE_HOME/zoo_core``, else
    ``~/.cache/zoo_core``.
    """
    explicit = os.environ.get("ZOO_CORE_CACHE")
    if explicit:
        return _usable_root(Path(explicit).expanduser(), f"ZOO_CORE_CACHE={explicit}")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return _usable_root(Path(xdg).expanduser() / "zoo_core",
                            f"XDG_CACHE_HOME={xdg} (zoo_core caches in its zoo_core/)")
    return _usable_root(Path.home() / ".cache" / "zoo_core", "the default cache")


def _usable_root(root: Path, named: str) -> Path:
    """``root``, unless it (or the nearest existing folder above it) is not a directory:
    then a :class:`~zoo_core.ConfigError` naming the variable, not a NotADirectoryError
    from deep inside a download."""
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == root else f"is under {probe}, which is a file"
        raise ConfigError(
            f"{named}: the cache folder {root} {what}, not a directory. Set ZOO_CORE_CACHE "
            "to a directory (created when missing), or unset it to use ~/.cache/zoo_core")
    return root


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---------------------------------------------------------------------------- sidecar


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> dict[str, object] | None:
    """The sidecar record of a cache entry (None when absent or unreadable)."""
    side = sidecar_path(path)
    if not refuse_link(side, "cache sidecar"):
        return None
    try:
        with open_read(side, "cache sidecar") as fh:
            record = json.loads(fh.read(_MAX_SIDECAR_BYTES).decode("utf-8"))
    except (OSError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        return None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None
    return record


def _trusted_digest(path: Path) -> str | None:
    """The recorded digest, if the file is provably unchanged since it was recorded."""
    record = read_sidecar(path)
    if record is None:
        return None
    key = record.get("stat")
    if isinstance(key, list) and tuple(key) == stat_key(os.stat(path)):
        return record["sha256"]  # type: ignore[return-value]
    return None


def write_sidecar(path: Path, digest: str, source: str) -> None:
    record = {"sha256": digest, "stat": list(stat_key(os.stat(path))),
              "source": redact_url(source)}
    target = sidecar_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cache_write_error(exc, path.parent, source) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, target)  # replaces a planted link itself, never its target
    except BaseException as exc:
        _unlink(Path(tmp))
        if isinstance(exc, OSError) and not isinstance(exc, WeightsError):
            raise _cache_write_error(exc, path.parent, source) from exc
        raise


def _cache_write_error(exc: OSError, directory: Path, source: str) -> WeightsError:
    if is_disk_full(exc):
        return disk_full_error(exc, directory, 4096, f"the cache record of {redact_url(source)}",
                               "Free space there or set ZOO_CORE_CACHE")
    return WeightsError(f"cannot write to the download cache {directory}: {exc}; set "
                        "ZOO_CORE_CACHE to a writable directory")


def known_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a loaded weights file: the cache sidecar when provably current, else
    hashed once per process (memoised by path and stat key)."""
    target = Path(path)
    with contextlib.suppress(WeightsError, OSError):
        trusted = _trusted_digest(target)
        if trusted is not None:
            return trusted
    return file_digest(target)


# ------------------------------------------------------------------------ cache entries


def entry_path(url: str) -> Path:
    """Where the download of ``url`` is cached (the key hashes the full URL)."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError:
        path = ""
    base = urllib.parse.unquote(path).rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base)[-120:].lstrip(".")
    if not base:
        base = "model.safetensors"
    return cache_dir() / "downloads" / key / base


def entry_problem(dest: Path, pin: str | None, url: str) -> str | None:
    """Why the cache entry ``dest`` can't be used (None when it can).

    Raises ``WeightsError`` for a planted link or a non-regular file (never "repaired" by
    writing through it).
    """
    shown = redact_url(url)
    if not refuse_link(dest, "cache entry"):
        return "not cached"
    try:
        check_safetensors(dest, name=shown)
    except WeightsError as exc:
        return str(exc)
    record = read_sidecar(dest)
    if record is None:
        return f"cached {dest} has no valid sidecar: not known to be a complete download"
    digest = _trusted_digest(dest)
    if digest is None:  # changed inode, size, mtime or ctime: hash and compare
        digest = sha256_file(dest)
        if digest != record["sha256"]:
            return (f"cached {dest} of {shown} changed since it was downloaded (sha256 "
                    f"recorded {record['sha256']}, now {digest})")
        with contextlib.suppress(OSError):
            write_sidecar(dest, digest, url)
    if pin is not None and digest != pin:
        return f"sha256 mismatch for cached {shown} ({dest}): expected {pin}, got {digest}"
    return None


@contextlib.contextmanager
def _entry_locked(dest: Path, url: str) -> Iterator[None]:
    """Hold the per-entry inter-process lock of cache entry ``dest``."""
    try:
        make_dirs(dest.parent)
        lock = locked(dest.with_name(dest.name + ".lock"), on_wait=lambda: logger.info(
            "waiting for another process that is downloading %s", dest))
        lock.__enter__()
    except OSError as exc:
        if isinstance(exc, WeightsError):
            raise
        raise _cache_write_error(exc, dest.parent, url) from exc
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def fetch_url(url: str, pin: str | None, progress: bool) -> Path:
    """A verified cached download of ``url`` (downloaded once; later calls hit the cache)."""
    check_url(url)
    shown = redact_url(url)
    if is_pickle_path(url):
        raise pickle_refusal(shown, "is a pickled checkpoint by its name")
    dest = entry_path(url)
    # Fast path without the lock: entries only ever appear by rename, complete.
    if entry_problem(dest, pin, url) is None:
        return dest
    with _entry_locked(dest, url):
        return _fetch_url_locked(url, dest, pin, progress)


def _fetch_url_locked(url: str, dest: Path, pin: str | None, progress: bool) -> Path:
    shown = redact_url(url)
    stale = False
    problem = entry_problem(dest, pin, url)  # another process may have finished it
    if problem is None:
        return dest
    if problem != "not cached":
        logger.warning("%s; deleting the cached copy and downloading it again", problem)
        # Unlink, never truncate: a process may have this file mmap'd.
        _unlink(dest, sidecar_path(dest))
        stale = True

    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.meta")
    for fresh_try in range(2):
        resumed = refuse_link(part, "partial download") and part.stat().st_size > 0
        try:
            digest = download(url, part, meta, progress)
        except WeightsError as exc:
            if not stale:
                raise
            raise WeightsError(f"{exc}. The cached copy was refused and deleted: "
                               f"{problem}") from exc
        try:
            check_safetensors(part, name=shown)
            if pin is not None and digest != pin:
                raise WeightsError(
                    f"sha256 mismatch for {shown} (downloaded to {dest}): expected {pin}, got "
                    f"{digest}. The download was deleted, nothing was cached"
                    + (" (the previously cached copy did not match either)" if stale else "")
                    + ". Check the URL and the pinned sha256")
        except WeightsError:
            _unlink(part, meta)
            if resumed and fresh_try == 0:
                logger.info("resumed download of %s is not valid; downloading it again", shown)
                continue
            raise
        # Only a verified file ever takes the cache name, and only by rename.
        os.replace(part, dest)
        write_sidecar(dest, digest, url)
        _unlink(meta)
        logger.info("downloaded %s to %s", shown, dest)
        return dest
    raise AssertionError("unreachable")  # pragma: no cover


def fetch_published_pickle(url: str, *, progress: bool = True) -> Path:
    """A first-party plugin's *published* pickle checkpoint, as a cached safetensors file.

    torchvision publishes its weights only as ``.pth`` pickles named ``<arch>-<sha256
    prefix>.pth``. Such a file is downloaded, checked against the digest prefix in its
    name, and converted once with ``torch.load(weights_only=True)`` (no arbitrary objects
    are unpickled); later builds load the cached safetensors file. User-given sources never
    come here: a ``.pth`` passed as ``weights=`` is refused with the conversion command.
    """
    from zoo_core.weights._convert import convert_checkpoint

    check_url(url)
    shown = redact_url(url)
    dest = entry_path(url)
    dest = dest.with_name(dest.name.rsplit(".", 1)[0] + ".safetensors")
    if entry_problem(dest, None, url) is None:
        return dest
    with _entry_locked(dest, url):
        if entry_problem(dest, None, url) is None:
            return dest
        _unlink(dest, sidecar_path(dest))
        part = dest.with_name(dest.name + ".pth.part")
        meta = dest.with_name(dest.name + ".pth.part.meta")
        digest = download(url, part, meta, progress)
        match = re.search(r"-([0-9a-f]{8,64})\.pth$", urllib.parse.urlsplit(url).path)
        if match and not digest.startswith(match.group(1)):
            _unlink(part, meta)
            raise WeightsError(
                f"sha256 mismatch for {shown}: its published name pins a digest starting "
                f"{match.group(1)}, the download has {digest}; nothing was cached")
        try:
            convert_checkpoint(part, dest)
        finally:
            _unlink(part, meta)
        write_sidecar(dest, sha256_file(dest), url)
        logger.info("converted published checkpoint %s to %s", shown, dest)
        return dest
