"""Tell "no network" from "a flaky download" in about a second, and say what to do.

Without network, a pretrained tag whose weights live on the Hub or at a URL used to cost
24-40 s of retries (huggingface_hub backs off up to 5 times on a failed lookup) before the
error. Retrying cannot help when:

* the host name does not resolve (DNS failure: no network, or no resolver);
* the connection is refused, or the network / host is unreachable;
* ``ZOO_CORE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` is set (nothing may be downloaded).

:func:`unreachable` checks that once (a name lookup and a TCP connect, each bounded; an
"unreachable" answer is kept for :data:`REMEMBER_S` seconds per host, so loading a config
and then its weights probes once); callers then use only what is cached
and raise :func:`offline_error`'s message at once. A slow answer is *not* taken for
"offline": only definite failures are.

>>> reason_of(ConnectionRefusedError(111, "Connection refused"))
'connection refused'
>>> reason_of(TimeoutError("timed out")) is None
True
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import urllib.parse
import urllib.request

__all__ = ["REMEMBER_S", "forced_offline", "offline_error", "probe", "reason_of", "target",
           "unreachable"]

REMEMBER_S = 5.0
_DNS_TIMEOUT_S = 1.0
_CONNECT_TIMEOUT_S = 1.0
_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN)
_seen: dict[tuple[str, int], tuple[float, str | None]] = {}
_lock = threading.Lock()


def forced_offline() -> str | None:
    """The environment variable that forbids downloads, when one is set."""
    for var in ("ZOO_CORE_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}=1 is set"
    return None


def reason_of(exc: BaseException | None) -> str | None:
    """Why ``exc`` (or what it wraps) means "no network", or None for other failures."""
    seen = 0
    while exc is not None and seen < 8:
        reason = getattr(exc, "reason", None)  # urllib.error.URLError wraps the OSError
        if isinstance(reason, BaseException):
            exc = reason
        if isinstance(exc, socket.gaierror):
            return f"the host name does not resolve ({exc.strerror or exc})"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
            return f"{os.strerror(exc.errno).lower()}"
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def target(url: str) -> tuple[str, int] | None:
    """The ``(host, port)`` a download of ``url`` connects to: its server, or the proxy
    configured for it (``*_proxy`` variables, ``no_proxy`` respected)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        pp = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = pp.hostname or host, pp.port or 8080
    return host, port


def unreachable(url: str) -> str | None:
    """Why ``url``'s server (or the proxy for it) certainly cannot be reached, else None."""
    forced = forced_offline()
    if forced:
        return forced
    key = target(url)
    if key is None:
        return None
    now = time.monotonic()
    with _lock:
        hit = _seen.get(key)
        if hit is not None and now - hit[0] < REMEMBER_S:
            return hit[1]
    _, reason = probe(*key)
    if reason is None:
        return None
    reason = f"{key[0]}:{key[1]}: {reason}"
    with _lock:
        _seen[key] = (time.monotonic(), reason)
    return reason


def probe(host: str, port: int, *, timeout: float = _CONNECT_TIMEOUT_S,
          dns_timeout: float = _DNS_TIMEOUT_S) -> tuple[bool, str | None]:
    """One bounded name lookup and TCP connect: ``(connected, reason)``, where ``reason``
    says why the host *certainly* cannot be reached (DNS failure, refused, unreachable) and
    is None for a success or an inconclusive failure (a slow resolver, a timeout)."""
    found: list[object] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    worker = threading.Thread(target=lookup, daemon=True, name="zoo_core-dns-probe")
    worker.start()
    worker.join(dns_timeout)
    if not found:
        return False, None  # slow resolver: not proof of anything
    if isinstance(found[0], BaseException):
        return False, reason_of(found[0])
    reason = None
    for family, kind, proto, _, address in found[0]:  # type: ignore[attr-defined]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(address)
                return True, None
            except OSError as exc:
                reason = reason_of(exc)
                if reason is None:
                    return False, None  # a timeout or another failure: not proof either
    return False, reason


def offline_error(what: str, reason: str, *, hub: bool) -> str:
    """The message for a download that cannot happen: what, why, and what to do."""
    mirror = ("set HF_ENDPOINT to a local Hub mirror, or run once with network access to "
              "fill the Hugging Face cache" if hub else
              "download the file elsewhere and pass its local path as weights=")
    cache = "the local Hugging Face cache" if hub else "zoo_core's download cache"
    return (f"cannot download {what}: no network ({reason}) and it is not in {cache}. Build "
            "without pretrained weights (weights=None, or strategy='scratch'), pass "
            f"weights=<local .safetensors file or folder>, or {mirror}")
