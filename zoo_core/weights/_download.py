"""One HTTP(S) download into a temp file: resumable, bounded in time, never spliced.

:func:`download` fetches a URL into ``<entry>.part`` and returns the sha256 of the whole
file. Guarantees:

* **No splice.** A ``.part`` is resumed (``Range`` + ``If-Range``) only when the first
  response carried a strong validator (``ETag`` or ``Last-Modified``, kept in
  ``.part.meta``); without one the download starts over, so a file that changed on the
  server can never be glued to the head of its old version.
* **No hang.** Every socket operation has a timeout, a download has an overall deadline,
  and a server that sends less than a minimum rate over a window is a stall. A stall or a
  deadline is an error that keeps the ``.part`` for the next fetch to resume. All four are
  configurable (see :func:`settings`).
* **No link followed.** ``.part`` and ``.part.meta`` are opened with ``O_NOFOLLOW``; a new
  ``.part`` is created exclusively (:mod:`zoo_core._safefs`).
* **No secret written or printed.** Messages, logs and sidecars carry :func:`redact_url`;
  a URL with ``user:password@`` is refused (urllib would try to resolve it as a host name).

>>> redact_url("https://u:pw@example.com/w.safetensors?token=abc&x=1")
'https://***@example.com/w.safetensors?token=***&x=1'
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_core._safefs import disk_full_error, is_disk_full, open_read, open_write, refuse_link
from zoo_core.errors import InvalidArgumentError, WeightsError
from zoo_core.weights._offline import forced_offline, offline_error, reason_of

__all__ = ["Settings", "check_url", "download", "redact_url", "settings"]

logger = logging.getLogger("zoo_core.weights")

_MAX_ATTEMPTS = 3  # a dropped connection is retried twice (resuming) before giving up
_RETRY_BACKOFF_S = 1.0  # sleep _RETRY_BACKOFF_S * attempt between attempts
_CHUNK = 1 << 20
_USER_AGENT = "zoo_core (+https://pypi.org/project/zoo-core/)"
_SECRET_PARAM = re.compile(
    r"(?i)(token|key|sig|signature|secret|pass|pwd|auth|cred|session|x-amz-security)")


@dataclass(frozen=True)
class Settings:
    """Time bounds of a download; each one an environment variable."""

    timeout_s: float = 30.0  # ZOO_CORE_DOWNLOAD_TIMEOUT: one socket operation
    deadline_s: float = 6 * 3600.0  # ZOO_CORE_DOWNLOAD_DEADLINE: the whole download
    min_rate: float = 1024.0  # ZOO_CORE_DOWNLOAD_MIN_RATE: bytes/s, averaged over the window
    rate_window_s: float = 60.0  # ZOO_CORE_DOWNLOAD_RATE_WINDOW


_ENV = {
    "timeout_s": "ZOO_CORE_DOWNLOAD_TIMEOUT",
    "deadline_s": "ZOO_CORE_DOWNLOAD_DEADLINE",
    "min_rate": "ZOO_CORE_DOWNLOAD_MIN_RATE",
    "rate_window_s": "ZOO_CORE_DOWNLOAD_RATE_WINDOW",
}


def settings() -> Settings:
    """:class:`Settings` from the environment (read at each download).

    >>> settings().timeout_s > 0
    True
    """
    values: dict[str, float] = {}
    for field, var in _ENV.items():
        raw = os.environ.get(var)
        if raw is None or not raw.strip():
            continue
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        zero_ok = field == "min_rate"
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            raise InvalidArgumentError(
                f"{var}={raw!r} is not a {'non-negative' if zero_ok else 'positive'} number "
                "of " + ("bytes per second" if zero_ok else "seconds") + "; fix or unset it")
        values[field] = value
    return Settings(**values)


# ------------------------------------------------------------------------------ URLs


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo and secret-looking query values become ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url.split("?", 1)[0])
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = []
        for item in query.split("&"):
            name, eq, _ = item.partition("=")
            pairs.append(f"{name}=***" if eq and _SECRET_PARAM.search(
                urllib.parse.unquote(name)) else item)
        query = "&".join(pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_url(url: str) -> None:
    """Refuse what urllib or the cache would choke on, naming the (redacted) URL."""
    shown = redact_url(url)
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidArgumentError(
            f"URL {shown!r} contains whitespace or control characters; percent-encode them")
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port  # port raises ValueError when malformed
    except ValueError as exc:
        raise InvalidArgumentError(f"malformed URL {shown!r}: {exc}") from None
    del port
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError(
            f"URL {shown!r} carries credentials (user:password@host); zoo_core does not send "
            "them. Use a pre-signed URL, a local mirror, or an hf-hub: source with HF_TOKEN")
    if not host:
        raise InvalidArgumentError(f"URL {shown!r} names no host")
    decoded = urllib.parse.unquote(parts.path)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise InvalidArgumentError(
            f"URL {shown!r} encodes control characters in its path (such as %00); "
            "no weights file has such a name: check the URL")


# -------------------------------------------------------------------------- download


class _Retry(Exception):
    """A transient download failure: the next attempt resumes or restarts."""


def download(url: str, part: Path, meta: Path, progress: bool) -> str:
    """Download ``url`` into ``part`` (resuming it when safe); return its sha256."""
    conf = settings()
    deadline = time.monotonic() + conf.deadline_s
    shown = redact_url(url)
    forced = forced_offline()
    if forced:
        raise WeightsError(offline_error(shown, forced, hub=False))
    last: Exception | None = None
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return _attempt(url, shown, part, meta, progress, conf, deadline)
        except _Retry as exc:
            last = exc
            if attempt < _MAX_ATTEMPTS:
                logger.info("download of %s interrupted (%s); retrying (%d/%d)", shown, exc,
                            attempt + 1, _MAX_ATTEMPTS)
                time.sleep(min(_RETRY_BACKOFF_S * attempt,
                               max(0.0, deadline - time.monotonic())))
    raise WeightsError(
        f"downloading {shown} failed after {_MAX_ATTEMPTS} attempts: {last}. "
        + (f"The partial download {part} is kept and the next fetch resumes it; "
           if _kept(part) else "")
        + "check the network and the URL and try again") from last


def _kept(part: Path) -> bool:
    with contextlib.suppress(OSError):
        return part.is_file() and not part.is_symlink() and part.stat().st_size > 0
    return False


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_validator(meta: Path) -> str | None:
    if not refuse_link(meta, "download sidecar"):
        return None
    with open_read(meta, "download sidecar") as fh:
        text = fh.read(1024).decode("utf-8", "replace").strip()
    return text if text and "\n" not in text and "\r" not in text else None


def _open_response(url: str, shown: str, headers: dict[str, str], timeout: float,
                   have: int, part: Path, meta: Path) -> Any:
    opener = urllib.request.build_opener()  # reads proxy settings from the environment now
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            _unlink(part, meta)
            raise _Retry(f"server refused to resume at byte {have}; restarting") from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from exc
        raise WeightsError(
            f"downloading {shown} failed: HTTP {exc.code} {exc.reason}; check the URL"
            + (" and your access to it" if exc.code in (401, 403) else "")) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # http.client raises InvalidURL (a ValueError) for what urlsplit let through
        if isinstance(exc, ValueError) and not isinstance(exc, OSError):
            raise InvalidArgumentError(f"malformed URL {shown!r}: {exc}") from None
        offline = reason_of(exc)
        if offline is not None and not have:  # no network: retrying only costs time
            raise WeightsError(offline_error(shown, offline, hub=False)) from exc
        reason = getattr(exc, "reason", exc)
        raise _Retry(f"cannot connect: {reason}") from exc


def _attempt(url: str, shown: str, part: Path, meta: Path, progress: bool, conf: Settings,
             deadline: float) -> str:
    have = part.stat().st_size if refuse_link(part, "partial download") else 0
    validator = _read_validator(meta) if have else None
    if have and validator is None:
        # Without a validator the server cannot tell us whether the file changed since the
        # first bytes were fetched: resuming could splice two versions. Start over.
        logger.info("partial download of %s has no ETag/Last-Modified; restarting", shown)
        _unlink(part, meta)
        have = 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have and validator:
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = validator  # the server sends 200 (the whole file) if it changed
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _deadline_error(shown, part, conf)
    response = _open_response(url, shown, headers, min(conf.timeout_s, remaining), have, part,
                              meta)
    if have and response.status != 206:
        have = 0
    with response:
        status = response.status
        if status == 206 and have:
            match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*",
                                 response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                _unlink(part, meta)
                raise _Retry(f"server answered the resume request with Content-Range "
                             f"{response.headers.get('Content-Range')!r}; restarting")
            total = None if match.group(3) == "*" else int(match.group(3))
            digest = hashlib.sha256()
            with open_read(part, "partial download") as fh:
                while block := fh.read(_CHUNK):
                    digest.update(block)
            append = True
        elif status == 200:
            if validator:
                logger.info("server does not resume %s (or it changed); restarting", shown)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            digest = hashlib.sha256()
            new_validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            _write_validator(meta, new_validator, part.parent, shown)
            append = False
        else:
            raise WeightsError(f"downloading {shown} failed: unexpected HTTP status {status}")
        _receive(response, part, append, have, total, digest, shown, progress, conf, deadline)

    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _unlink(part, meta)
        raise _Retry(f"received {size} bytes but the server announced {total}; restarting")
    return digest.hexdigest()


def _write_validator(meta: Path, validator: str | None, directory: Path, shown: str) -> None:
    ok = validator and not validator.startswith("W/") and len(validator) < 1024 and not any(
        c in validator for c in "\r\n\x00")
    if not ok:
        refuse_link(meta, "download sidecar")
        _unlink(meta)
        return
    try:
        with open_write(meta, "download sidecar") as fh:
            fh.write(validator.encode("utf-8"))  # type: ignore[union-attr]
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, WeightsError):
            raise disk_full_error(exc, directory, None, f"the download of {shown}",
                                  "Free space there or set ZOO_CORE_CACHE") from exc
        raise


def _receive(response: Any, part: Path, append: bool, have: int, total: int | None,
             digest: Any, shown: str, progress: bool, conf: Settings, deadline: float) -> None:
    from tqdm import tqdm

    window_start, window_bytes = time.monotonic(), 0
    # ``part`` is our own temp file (never loaded, never mmap'd): appending to it is fine.
    # The cache entry itself is only ever created by os.replace.
    # The try encloses the ``with``: closing the file flushes its buffer, and a full disk can
    # fail there too (EFBIG/ENOSPC on close), not only on write().
    try:
        with (open_write(part, "partial download", append=append) as out,
              tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[: -len(".part")], disable=True if not progress else None,
                   leave=True) as bar):
            while True:
                try:
                    block = response.read1(_CHUNK)  # returns whatever arrived: rate is checked
                except Exception as exc:  # IncompleteRead, reset, timeout, ...
                    out.flush()
                    raise _Retry(f"connection lost: {exc!r}") from exc
                now = time.monotonic()
                if block:
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
                    window_bytes += len(block)
                if now > deadline:
                    out.flush()
                    raise _deadline_error(shown, part, conf)
                if now - window_start >= conf.rate_window_s:
                    rate = window_bytes / (now - window_start)
                    if rate < conf.min_rate:
                        out.flush()
                        raise WeightsError(
                            f"download of {shown} stalled: {window_bytes} bytes in the last "
                            f"{now - window_start:.1f} s ({rate:.1f} B/s, minimum "
                            f"{conf.min_rate:g} B/s over {conf.rate_window_s:g} s: "
                            "ZOO_CORE_DOWNLOAD_MIN_RATE / ZOO_CORE_DOWNLOAD_RATE_WINDOW). The "
                            f"partial download {part} is kept and the next fetch resumes it")
                    window_start, window_bytes = now, 0
                if not block:
                    break
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, WeightsError):
            needed = None if total is None else total - have
            raise disk_full_error(
                exc, part.parent, needed, f"the download of {shown}",
                f"The partial download {part} is kept. Free space there, or set "
                "ZOO_CORE_CACHE to a disk with room, and fetch again") from exc
        raise


def _deadline_error(shown: str, part: Path, conf: Settings) -> WeightsError:
    return WeightsError(
        f"download of {shown} did not finish within {conf.deadline_s:g} s "
        "(ZOO_CORE_DOWNLOAD_DEADLINE)." + (f" The partial download {part} is kept and the "
                                            "next fetch resumes it" if _kept(part) else ""))
