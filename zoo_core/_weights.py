"""Where weights come from, and proof that they are what they claim to be.

:func:`fetch_weights` turns a weights *source* into a local path to a verified
``.safetensors`` file. Sources:

* a local path (file or directory) or a ``file://`` URL;
* an ``http://`` / ``https://`` URL, downloaded once into :func:`cache_dir`;
* ``hf-hub:org/repo[@revision]``, fetched with ``huggingface_hub`` (its own cache,
  ``HF_HOME``, ``HF_HUB_OFFLINE`` and tokens apply);
* ``pkg:package.name/relative/path.safetensors``, a file shipped inside an installed
  package.

Only safetensors are ever loaded: pickled checkpoints (``.pth``, ``.pt``, ``.bin``,
``.ckpt``, ``.pkl`` or a file starting with a zip / pickle marker) are refused with a
pointer to :func:`convert_checkpoint` (``zoo convert IN OUT``).

Cache layout (URL downloads)::

    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>          verified file
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.sha256   sidecar (JSON)
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.part     download in progress
    <cache_dir>/downloads/<first 16 hex of sha256(url)>/<basename>.lock     per-entry lock

Cached files are only ever *replaced by rename* (``os.replace``) or unlinked, never
rewritten or truncated in place: tensors loaded from them may be mmap'd by a running
process, and truncating a mapped file under it would kill that process with SIGBUS.
A rename or unlink leaves the old inode alive for as long as it is mapped.

Only the standard library is imported at module level; torch, safetensors,
huggingface_hub, filelock and tqdm are imported inside the functions that need them.

>>> is_pickle_path("https://example.com/resnet50.pth?download=1")
True
>>> is_pickle_path("hf-hub:org/repo")
False
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

from zoo_core.errors import InvalidArgumentError, WeightsError

__all__ = [
    "cache_dir",
    "check_safetensors",
    "convert_checkpoint",
    "fetch_weights",
    "is_pickle_path",
    "sha256_file",
]

logger = logging.getLogger("zoo_core.weights")

_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pth.tar")
_SUPPORTED = (
    "a local path or file:// URL to a .safetensors file (or a directory holding one), "
    "an http(s):// URL, hf-hub:org/repo[@revision], or pkg:package.name/path/in/package"
)
_CONVERT_HINT = (
    "zoo_core loads safetensors only (unpickling a checkpoint can run arbitrary code). "
    "Convert it once with `zoo convert IN OUT` (or `zoo_core.convert_checkpoint(IN, OUT)`) "
    "and point the source at OUT"
)

# Network behaviour; module-level so tests (and brave users) can tune them.
_HTTP_TIMEOUT_S = 30.0  # per socket operation, not for the whole download
_MAX_ATTEMPTS = 3  # a dropped connection is retried twice (resuming) before giving up
_RETRY_BACKOFF_S = 1.0  # sleep _RETRY_BACKOFF_S * attempt between attempts
_CHUNK = 1 << 20
_USER_AGENT = "zoo_core (+https://pypi.org/project/zoo-core/)"

_MAX_HEADER_BYTES = 100_000_000  # same limit as the safetensors library
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

# In-process memo of local-file digests: (path, size, mtime_ns, inode) -> sha256.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    """Root of zoo_core's download cache (not created here).

    ``$ZOO_CORE_CACHE`` if set, else ``$XDG_CACHE_HOME/zoo_core``, else
    ``~/.cache/zoo_core``.
    """
    explicit = os.environ.get("ZOO_CORE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "zoo_core"
    return Path.home() / ".cache" / "zoo_core"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def is_pickle_path(source: str) -> bool:
    """Whether a source *names* a pickled checkpoint (by its suffix; URLs by their path).

    >>> is_pickle_path("weights/model.safetensors"), is_pickle_path("ckpt.PT")
    (False, True)
    """
    text = str(source).strip()
    if "://" in text:
        text = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
    return text.rstrip("/").lower().endswith(_PICKLE_SUFFIXES)


def _label(path: Path | str, name: str | None) -> str:
    return f"{name} ({path})" if name and str(name) != str(path) else str(path)


def _normalize_sha(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str):
        raise InvalidArgumentError(f"sha256 must be a hex string, got {type(sha256).__name__}")
    value = sha256.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise InvalidArgumentError(
            f"sha256 {sha256!r} is not a sha256 digest (64 hex characters); "
            "compute one with `sha256sum FILE` or zoo_core._weights.sha256_file(FILE)"
        )
    return value


def _pickle_refusal(label: str, what: str) -> WeightsError:
    return WeightsError(f"{label} {what}, not safetensors. {_CONVERT_HINT}.")


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ------------------------------------------------------------------ structural check


def check_safetensors(path: str | os.PathLike[str], *, name: str | None = None) -> None:
    """Check that ``path`` is a complete, well-formed safetensors file; raise ``WeightsError``.

    Reads only the 8-byte header length and the JSON header, validates every tensor entry
    (dtype, shape, contiguous data offsets) and compares the file size with
    ``8 + header_len + end of the last tensor``, so a truncated download is detected
    without reading the tensor data. ``name`` (e.g. the URL) is added to messages.
    """
    path = Path(path)
    label = _label(path, name)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(9)
            if len(prefix) < 9:
                _raise_bad_prefix(label, prefix, size)
            (header_len,) = struct.unpack("<Q", prefix[:8])
            if prefix[8:9] != b"{" or header_len > min(size - 8, _MAX_HEADER_BYTES):
                if prefix[8:9] == b"{" and header_len <= _MAX_HEADER_BYTES:
                    raise WeightsError(
                        f"{label} is truncated: its safetensors header alone is {header_len} "
                        f"bytes but the file has only {size} bytes; delete it and fetch it again"
                    )
                _raise_bad_prefix(label, prefix, size)
            fh.seek(8)
            raw = fh.read(header_len)
    except OSError as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"cannot read weights file {label}: {exc}") from exc

    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"{label} is not a valid safetensors file: its header is not JSON ({exc})"
        ) from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{label} is not a valid safetensors file: header is not an object")

    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
            ):
                raise WeightsError(
                    f"{label} is not a valid safetensors file: __metadata__ must map str to str"
                )
            continue
        spans.append(_check_entry(label, key, entry))

    spans.sort()
    expected_start = 0
    for begin, end, key in spans:
        if begin != expected_start:
            raise WeightsError(
                f"{label} is not a valid safetensors file: tensor {key!r} starts at byte "
                f"{begin} of the data section, expected {expected_start} (overlap or gap)"
            )
        expected_start = end
    expected_size = 8 + header_len + expected_start
    if size < expected_size:
        raise WeightsError(
            f"{label} is truncated: header promises {expected_size} bytes but the file has "
            f"{size}; delete it and fetch it again"
        )
    if size > expected_size:
        raise WeightsError(
            f"{label} is not a valid safetensors file: {size - expected_size} unexpected "
            f"trailing bytes after the last tensor (expected {expected_size} bytes, got {size})"
        )


def _raise_bad_prefix(label: str, prefix: bytes, size: int) -> NoReturn:
    if prefix.startswith(b"PK\x03\x04"):
        raise _pickle_refusal(label, "is a zip archive (a torch.save checkpoint)")
    if prefix[:1] == b"\x80" and len(prefix) > 1 and 1 <= prefix[1] <= 5:
        raise _pickle_refusal(label, "is a Python pickle (a legacy torch.save checkpoint)")
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
        f"{_CONVERT_HINT[0].lower()}{_CONVERT_HINT[1:]}"
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


# ------------------------------------------------------------------- verification


def _file_digest(path: Path) -> str:
    """sha256 of a local file, memoised in-process by (path, size, mtime_ns, inode)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _DIGESTS_LOCK:
        cached = _DIGESTS.get(key)
    if cached is not None:
        return cached
    digest = sha256_file(path)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
    return digest


def _verify_file(path: Path, sha256: str | None, *, name: str | None, hint: str) -> None:
    """Structure + pinned digest of a file we do not own (local, package, HF cache)."""
    check_safetensors(path, name=name)
    if sha256 is not None:
        actual = _file_digest(path)
        if actual != sha256:
            raise WeightsError(
                f"sha256 mismatch for {_label(path, name)}: expected {sha256}, got {actual}. {hint}"
            )


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    """The digest recorded for a cache entry, if the file is unchanged since it was recorded."""
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        st = path.stat()
        if (
            isinstance(record, dict)
            and record.get("size") == st.st_size
            and record.get("mtime_ns") == st.st_mtime_ns
            and isinstance(record.get("sha256"), str)
        ):
            return record["sha256"]
    except (OSError, ValueError):
        pass
    return None


def _write_sidecar(path: Path, digest: str, source: str) -> None:
    st = path.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "source": source}
    target = _sidecar(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, target)
    except BaseException:
        _unlink(Path(tmp))
        raise


# ------------------------------------------------------------------- fetch_weights


def fetch_weights(
    source: str,
    *,
    sha256: str | None = None,
    revision: str | None = None,
    filename: str = "model.safetensors",
    progress: bool = True,
) -> Path:
    """Return a local path to a verified ``.safetensors`` file for ``source``.

    ``sha256`` pins the file's digest (checked for every source). ``revision`` and
    ``filename`` apply to ``hf-hub:`` sources; ``filename`` also picks the file in a local
    directory. Raises ``WeightsError`` for missing, corrupt, pickled or mismatching
    weights and ``InvalidArgumentError`` for a malformed source.
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise InvalidArgumentError(
            f"weights source must be a string, got {type(source).__name__}; expected {_SUPPORTED}"
        )
    text = source.strip()
    if not text:
        raise InvalidArgumentError(f"empty weights source; expected {_SUPPORTED}")
    pin = _normalize_sha(sha256)
    if not isinstance(filename, str) or not filename.strip():
        raise InvalidArgumentError(f"filename must be a non-empty string, got {filename!r}")

    if text.startswith("hf-hub:"):
        return _fetch_hub(text, pin, revision, filename, progress)
    if revision is not None:
        raise InvalidArgumentError(
            f"revision={revision!r} only applies to hf-hub: sources, not {text!r}"
        )
    if text.startswith("pkg:"):
        return _fetch_pkg(text, pin, filename)

    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    if scheme:
        kind = scheme.group(1).lower()
        if kind in ("http", "https"):
            return _fetch_url(text, pin, progress)
        if kind == "file":
            return _fetch_local(_file_url_to_path(text), pin, filename, name=text)
        hint = " (for the Hugging Face Hub use hf-hub:org/repo)" if kind == "hf" else ""
        raise InvalidArgumentError(
            f"unknown scheme {kind!r} in weights source {text!r}{hint}; expected {_SUPPORTED}"
        )
    return _fetch_local(Path(text).expanduser(), pin, filename, name=None)


def _file_url_to_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgumentError(
            f"file:// URL {url!r} names host {parts.netloc!r}; only local files are supported "
            "(use file:///absolute/path)"
        )
    return Path(urllib.request.url2pathname(parts.path))


def _fetch_local(path: Path, pin: str | None, filename: str, *, name: str | None) -> Path:
    label = _label(path, name)
    if is_pickle_path(str(path)):
        raise _pickle_refusal(label, "is a pickled checkpoint by its name")
    if path.is_dir():
        path = _pick_in_directory(path, filename, name=name)
    elif not path.exists():
        raise WeightsError(
            f"weights file not found: {label}; check the path (relative paths are resolved "
            f"against {os.getcwd()}) or use one of: {_SUPPORTED}"
        )
    path = path.resolve()
    _verify_file(
        path,
        pin,
        name=name,
        hint="This is your file and it was left untouched: check the pinned sha256 "
        "or replace the file with the one it pins.",
    )
    return path


def _pick_in_directory(directory: Path, filename: str, *, name: str | None) -> Path:
    chosen = directory / filename
    if chosen.is_file():
        return chosen
    candidates = sorted(p for p in directory.glob("*.safetensors") if p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    entries = sorted(p.name for p in directory.iterdir())
    shown = ", ".join(entries[:20]) + (
        f", ... ({len(entries)} entries)" if len(entries) > 20 else ""
    )
    label = _label(directory, name)
    if candidates:
        raise WeightsError(
            f"directory {label} holds {len(candidates)} .safetensors files and no "
            f"{filename!r}: {', '.join(p.name for p in candidates)}; "
            "point the source at one file or pass filename="
        )
    pickled = [e for e in entries if is_pickle_path(e)]
    extra = (
        f" It holds pickled checkpoints ({', '.join(pickled)}): {_CONVERT_HINT}." if pickled else ""
    )
    raise WeightsError(
        f"directory {label} holds no {filename!r} and no .safetensors file "
        f"(it contains: {shown or 'nothing'}).{extra}"
    )


# --- pkg: -------------------------------------------------------------------------


def _fetch_pkg(source: str, pin: str | None, filename: str) -> Path:
    spec = source[len("pkg:") :].strip()
    package, _, rel = spec.partition("/")
    if not package or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", package):
        raise InvalidArgumentError(
            f"bad pkg: source {source!r}; expected pkg:package.name/relative/path.safetensors"
        )
    rel_parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") for p in rel_parts):
        raise InvalidArgumentError(f"pkg: source {source!r} must not contain '.' or '..'")
    if is_pickle_path(rel):
        raise _pickle_refusal(source, "is a pickled checkpoint by its name")

    import importlib.resources as resources

    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise WeightsError(
            f"{source}: package {package!r} is not installed ({exc}); install the package "
            "that ships these weights"
        ) from exc
    except TypeError as exc:  # a plain module, not a package
        raise WeightsError(f"{source}: {package!r} is not a package ({exc})") from exc
    resource = root.joinpath(*rel_parts) if rel_parts else root
    if isinstance(resource, Path):
        if not resource.exists():
            raise WeightsError(
                f"{source}: {resource} does not exist in package {package!r}; check the path "
                "and that the file is listed in the package's package-data"
            )
        return _fetch_local(resource, pin, filename, name=source)
    # A package inside a zip: copy the file out once into the cache, replaced by rename.
    if not resource.is_file():
        raise WeightsError(f"{source}: no such file in package {package!r}")
    key = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    dest = cache_dir() / "pkg" / key / (rel_parts[-1] if rel_parts else "model.safetensors")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, resource.open("rb") as src:
                while block := src.read(_CHUNK):
                    out.write(block)
            os.replace(tmp, dest)
        except BaseException:
            _unlink(Path(tmp))
            raise
    return _fetch_local(dest, pin, filename, name=source)


# --- hf-hub: ----------------------------------------------------------------------


def _fetch_hub(
    source: str, pin: str | None, revision: str | None, filename: str, progress: bool
) -> Path:
    spec = source[len("hf-hub:") :].strip()
    repo_id, at, inline_rev = spec.partition("@")
    repo_id = repo_id.strip().strip("/")
    if at and not inline_rev:
        raise InvalidArgumentError(f"{source!r}: empty revision after '@'")
    if inline_rev and revision is not None and inline_rev != revision:
        raise InvalidArgumentError(
            f"{source!r} pins revision {inline_rev!r} but revision={revision!r} was also "
            "given; use one"
        )
    revision = inline_rev or revision
    if not repo_id or repo_id.count("/") > 1:
        raise InvalidArgumentError(
            f"bad hf-hub source {source!r}; expected hf-hub:org/repo[@revision]"
        )
    if is_pickle_path(filename):
        raise _pickle_refusal(f"{source} file {filename!r}", "is a pickled checkpoint by its name")

    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    where = f"{filename!r} from Hugging Face Hub repo {repo_id!r}" + (
        f" at revision {revision!r}" if revision else ""
    )
    kwargs: dict[str, Any] = {"revision": revision}
    if not progress:
        import inspect

        if "tqdm_class" in inspect.signature(huggingface_hub.hf_hub_download).parameters:
            from tqdm import tqdm as _tqdm

            class _Silent(_tqdm):  # type: ignore[misc, valid-type]
                def __init__(self, *args: Any, **kw: Any) -> None:
                    kw["disable"] = True
                    super().__init__(*args, **kw)

            kwargs["tqdm_class"] = _Silent

    gated = getattr(hf_errors, "GatedRepoError", ())
    offline = getattr(hf_errors, "OfflineModeIsEnabled", ())
    validation = getattr(hf_errors, "HFValidationError", ())
    http_error = getattr(hf_errors, "HfHubHTTPError", ())
    try:
        local = huggingface_hub.hf_hub_download(repo_id, filename, **kwargs)
    except gated as exc:
        raise WeightsError(
            f"cannot download {where}: the repo is gated. Accept its terms at "
            f"https://huggingface.co/{repo_id} and log in (`hf auth login`, or set HF_TOKEN)"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise WeightsError(
            f"cannot download {where}: repository not found (or private). Check the repo "
            "name; for a private repo log in (`hf auth login`, or set HF_TOKEN)"
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise WeightsError(
            f"cannot download {where}: revision {revision!r} not found. Check the branch, "
            "tag or commit sha"
        ) from exc
    except (hf_errors.LocalEntryNotFoundError, offline) as exc:
        raise WeightsError(
            f"cannot get {where}: it is not in the local Hugging Face cache and cannot be "
            "downloaded (offline: HF_HUB_OFFLINE=1, or no connection to the Hub). Run once "
            "with network access (unset HF_HUB_OFFLINE) to cache it, or download the file "
            "and use its local path as the source"
        ) from exc
    except hf_errors.EntryNotFoundError as exc:
        raise WeightsError(
            f"cannot download {where}: the repo has no file {filename!r}. Check the file "
            "name (WeightsSpec.filename / filename=)"
        ) from exc
    except validation as exc:
        raise InvalidArgumentError(f"bad hf-hub source {source!r}: {exc}") from exc
    except http_error as exc:
        raise WeightsError(f"cannot download {where}: {exc}") from exc
    except OSError as exc:
        raise WeightsError(
            f"cannot download {where}: {exc}. Check the network, or set HF_HUB_OFFLINE=1 to "
            "use the local cache only"
        ) from exc
    path = Path(local)
    _verify_file(
        path,
        pin,
        name=f"{filename} from {source}",
        hint="Pin an exact commit (hf-hub:org/repo@<commit sha>) that holds the pinned file, "
        "or update the pin.",
    )
    return path


# --- http(s): ---------------------------------------------------------------------


class _Retry(Exception):
    """A transient download failure: the next attempt resumes or restarts."""


def _entry_path(url: str) -> Path:
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    base = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]
    base = base.replace("\\", "_").strip()
    if base in ("", ".", "..") or base.startswith("."):
        base = "model.safetensors"
    return cache_dir() / "downloads" / key / base


def _cache_entry_problem(dest: Path, pin: str | None, url: str) -> str | None:
    """Why the cache entry ``dest`` can't be used (None when it can).

    Trusts the sidecar digest only while the file's size and mtime_ns are the recorded
    ones; otherwise hashes the file and records a fresh sidecar.
    """
    try:
        check_safetensors(dest, name=url)
    except WeightsError as exc:
        return str(exc)
    digest = _read_sidecar(dest)
    if digest is None:
        digest = sha256_file(dest)
        with contextlib.suppress(OSError):
            _write_sidecar(dest, digest, url)
    if pin is not None and digest != pin:
        return f"sha256 mismatch for cached {_label(dest, url)}: expected {pin}, got {digest}"
    return None


def _acquire_entry_lock(dest: Path) -> Any:
    """Acquire (blocking) the per-entry inter-process lock; the caller releases it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(dest.with_name(dest.name + ".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("waiting for another process that is downloading %s", dest)
        lock.acquire()
    return lock


def _fetch_url(url: str, pin: str | None, progress: bool) -> Path:
    if is_pickle_path(url):
        raise _pickle_refusal(url, "is a pickled checkpoint by its name")
    dest = _entry_path(url)
    # Fast path without the lock: entries only ever appear by rename, complete.
    if dest.exists() and _read_sidecar(dest) is not None:
        if _cache_entry_problem(dest, pin, url) is None:
            return dest
    with _entry_locked(dest, url):
        return _fetch_url_locked(url, dest, pin, progress)


@contextlib.contextmanager
def _entry_locked(dest: Path, url: str) -> Any:
    """Hold the per-entry inter-process lock of cache entry ``dest``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = _acquire_entry_lock(dest)
    except OSError as exc:
        raise WeightsError(
            f"cannot use the download cache {dest.parent} for {url}: {exc}; set ZOO_CORE_CACHE "
            "to a writable directory"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _fetch_url_locked(url: str, dest: Path, pin: str | None, progress: bool) -> Path:
    stale = False
    if dest.exists():  # maybe another process finished it while we waited for the lock
        problem = _cache_entry_problem(dest, pin, url)
        if problem is None:
            return dest
        logger.warning("%s; deleting the cached copy and downloading it again", problem)
        # Unlink, never truncate: a process may have this file mmap'd.
        _unlink(dest, _sidecar(dest))
        stale = True

    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.meta")
    for fresh_try in range(2):
        resumed = part.exists() and part.stat().st_size > 0
        digest = _download(url, part, meta, progress)
        try:
            check_safetensors(part, name=url)
            if pin is not None and digest != pin:
                raise WeightsError(
                    f"sha256 mismatch for {url} (downloaded to {dest}): expected {pin}, got "
                    f"{digest}. The download was deleted, nothing was cached"
                    + (" (the previously cached copy did not match either)" if stale else "")
                    + ". Check the URL and the pinned sha256"
                )
        except WeightsError:
            _unlink(part, meta)
            if resumed and fresh_try == 0:
                logger.info("resumed download of %s is not valid; downloading it again", url)
                continue
            raise
        # Only a verified file ever takes the cache name, and only by rename.
        os.replace(part, dest)
        _write_sidecar(dest, digest, url)
        _unlink(meta)
        logger.info("downloaded %s to %s", url, dest)
        return dest
    raise AssertionError("unreachable")  # pragma: no cover


def _download(url: str, part: Path, meta: Path, progress: bool) -> str:
    """Download ``url`` into ``part`` (resuming it when present); return its sha256."""
    last: Exception | None = None
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return _download_attempt(url, part, meta, progress)
        except _Retry as exc:
            last = exc
            if attempt < _MAX_ATTEMPTS:
                logger.info(
                    "download of %s interrupted (%s); retrying (%d/%d)",
                    url,
                    exc,
                    attempt + 1,
                    _MAX_ATTEMPTS,
                )
                time.sleep(_RETRY_BACKOFF_S * attempt)
    kept = part.exists() and part.stat().st_size > 0
    raise WeightsError(
        f"downloading {url} failed after {_MAX_ATTEMPTS} attempts: {last}. "
        + (f"The partial download {part} is kept and the next fetch resumes it; " if kept else "")
        + "check the network and the URL and try again"
    ) from last


def _download_attempt(url: str, part: Path, meta: Path, progress: bool) -> str:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        with contextlib.suppress(OSError):
            validator = meta.read_text(encoding="utf-8").strip()
            if validator:
                headers["If-Range"] = validator  # server sends 200 (full) if it changed
    opener = urllib.request.build_opener()  # reads proxy settings from the environment now
    try:
        response = opener.open(
            urllib.request.Request(url, headers=headers), timeout=_HTTP_TIMEOUT_S
        )
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            _unlink(part, meta)
            raise _Retry(f"server refused to resume at byte {have}; restarting") from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from exc
        raise WeightsError(
            f"downloading {url} failed: HTTP {exc.code} {exc.reason}; check the URL"
            + (" and your access to it" if exc.code in (401, 403) else "")
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retry(f"cannot connect: {reason}") from exc

    with response:
        status = response.status
        if status == 206 and have:
            match = re.fullmatch(
                r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", response.headers.get("Content-Range", "")
            )
            if not match or int(match.group(1)) != have:
                _unlink(part, meta)
                raise _Retry(
                    f"server answered the resume request with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; restarting"
                )
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
            digest = hashlib.sha256()
            with open(part, "rb") as fh:
                while block := fh.read(_CHUNK):
                    digest.update(block)
        elif status == 200:
            if have:
                logger.info("server does not resume %s; restarting from byte 0", url)
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
            digest = hashlib.sha256()
            validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            if validator and not validator.startswith("W/"):
                meta.write_text(validator, encoding="utf-8")
            else:
                _unlink(meta)
        else:
            raise WeightsError(f"downloading {url} failed: unexpected HTTP status {status}")

        from tqdm import tqdm

        # ``part`` is our own temp file (never loaded, never mmap'd): appending/truncating it
        # is fine. The cache entry itself is only ever created by os.replace.
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[: -len(".part")],
                disable=True if not progress else None,
                leave=True,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(_CHUNK)
                except Exception as exc:  # IncompleteRead, reset, timeout, ...
                    out.flush()
                    raise _Retry(f"connection lost: {exc!r}") from exc
                if not block:
                    break
                out.write(block)
                digest.update(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())

    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _unlink(part, meta)
        raise _Retry(f"received {size} bytes but the server announced {total}; restarting")
    return digest.hexdigest()


# -------------------------------------------------------------- convert_checkpoint


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, overwrite: bool = False
) -> str:
    """Convert a ``torch.save`` checkpoint to safetensors; return the sha256 of ``dst``.

    ``src`` is loaded with ``torch.load(weights_only=True)``: a checkpoint holding
    arbitrary Python objects is refused, never unpickled. Accepts a plain state dict or a
    dict whose ``"state_dict"`` / ``"model"`` entry is one; strips a ``module.`` prefix
    present on every key (DataParallel); makes tensors contiguous and clones tensors that
    share storage. ``dst`` appears complete or not at all (temp file + rename); it is not
    overwritten unless ``overwrite=True``. Nothing else is written.
    """
    src_path, dst_path = Path(src).expanduser(), Path(dst).expanduser()
    if not src_path.is_file():
        raise WeightsError(f"checkpoint to convert not found: {src_path}")
    if is_pickle_path(str(dst_path)):
        raise InvalidArgumentError(f"output {dst_path} has a pickle suffix; name it *.safetensors")
    if dst_path.exists() and not overwrite:
        raise WeightsError(
            f"{dst_path} already exists; pass overwrite=True (`zoo convert --overwrite`) "
            "to replace it"
        )
    if not dst_path.parent.is_dir():
        raise WeightsError(f"output directory {dst_path.parent} does not exist; create it first")
    with contextlib.suppress(WeightsError):
        check_safetensors(src_path)
        raise InvalidArgumentError(f"{src_path} is already a safetensors file; nothing to convert")

    import pickle

    import torch

    try:
        obj = torch.load(src_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        detail = f" (found {found.group(1)})" if found else ""
        raise WeightsError(
            f"{src_path} cannot be loaded safely: it contains arbitrary Python objects{detail} "
            "or is not a PyTorch checkpoint, and zoo_core will not unpickle it "
            "(weights_only=True refused it). Re-save only the tensors "
            "(torch.save(model.state_dict(), PATH)) from code you trust, then convert that"
        ) from exc
    except Exception as exc:  # corrupt zip, EOF, ...
        raise WeightsError(f"cannot read checkpoint {src_path}: {exc}") from exc

    state = _extract_state_dict(obj, src_path)
    tensors = _prepare_tensors(state, src_path)

    from safetensors.torch import save_file

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst_path.name}.", suffix=".tmp", dir=dst_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        check_safetensors(tmp, name=str(dst_path))
        digest = sha256_file(tmp)
        if overwrite:
            os.replace(tmp, dst_path)
        else:
            try:
                os.link(tmp, dst_path)  # atomic "create only if absent"
            except FileExistsError as exc:
                raise WeightsError(
                    f"{dst_path} appeared while converting; pass overwrite=True to replace it"
                ) from exc
            except OSError:  # filesystem without hard links
                if dst_path.exists():
                    raise WeightsError(
                        f"{dst_path} appeared while converting; pass overwrite=True to replace it"
                    ) from None
                os.replace(tmp, dst_path)
    finally:
        _unlink(tmp)
    logger.info(
        "converted %s -> %s (%d tensors, sha256 %s)", src_path, dst_path, len(tensors), digest
    )
    return digest


def _extract_state_dict(obj: Any, src: Path) -> dict[str, Any]:
    import torch

    def is_state_dict(value: Any) -> bool:
        return (
            isinstance(value, dict)
            and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
        )

    if is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if is_state_dict(obj.get(key)):
                logger.info("using the %r entry of checkpoint %s", key, src)
                return dict(obj[key])
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise WeightsError(
            f"{src} is not a state dict (a dict of str -> tensor) and has no 'state_dict' or "
            f"'model' entry holding one (top-level keys: {keys or 'none'}); save "
            "model.state_dict() and convert that"
        )
    raise WeightsError(
        f"{src} holds a {type(obj).__name__}, not a state dict; save model.state_dict() and "
        "convert that"
    )


def _prepare_tensors(state: dict[str, Any], src: Path) -> dict[str, Any]:
    keys = list(state)
    if all(k.startswith("module.") for k in keys):
        logger.info("stripping the 'module.' prefix from all %d keys of %s", len(keys), src)
        state = {k[len("module.") :]: v for k, v in state.items()}
        if len(state) != len(keys) or "" in state:
            raise WeightsError(f"{src}: stripping 'module.' makes keys collide or empty")

    import torch

    out: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in state.items():
        if tensor.layout is not torch.strided:
            raise WeightsError(
                f"{src}: tensor {key!r} has layout {tensor.layout}; only dense tensors can be "
                "saved as safetensors"
            )
        t = tensor.detach().contiguous()
        storage = t.untyped_storage()
        ident = (storage.data_ptr(), storage.nbytes())
        owns_storage = storage.nbytes() == t.numel() * t.element_size()
        if ident in seen or not owns_storage:
            t = t.clone()  # shared (tied) or a view: give it its own storage
        elif t.numel():
            seen.add(ident)
        out[key] = t
    return out


# -------------------------------------------------------------- published pickles


def fetch_published_pickle(url: str, *, progress: bool = True) -> Path:
    """A first-party plugin's *published* pickle checkpoint, as a cached safetensors file.

    torchvision publishes its weights only as ``.pth`` pickles named ``<arch>-<sha256
    prefix>.pth``. Such a file is downloaded, checked against the digest prefix in its
    name, and converted once with ``torch.load(weights_only=True)`` (no arbitrary objects
    are unpickled); later builds load the cached safetensors file. User-given sources never
    come here: a ``.pth`` passed as ``weights=`` is refused with the conversion command.
    """
    dest = _entry_path(url)
    dest = dest.with_name(dest.name.rsplit(".", 1)[0] + ".safetensors")
    if dest.exists() and _cache_entry_problem(dest, None, url) is None:
        return dest
    with _entry_locked(dest, url):
        if dest.exists() and _cache_entry_problem(dest, None, url) is None:
            return dest
        _unlink(dest, _sidecar(dest))
        part = dest.with_name(dest.name + ".pth.part")
        meta = dest.with_name(dest.name + ".pth.part.meta")
        digest = _download(url, part, meta, progress)
        match = re.search(r"-([0-9a-f]{8,64})\.pth$", urllib.parse.urlsplit(url).path)
        if match and not digest.startswith(match.group(1)):
            _unlink(part, meta)
            raise WeightsError(
                f"sha256 mismatch for {url}: its published name pins a digest starting "
                f"{match.group(1)}, the download has {digest}; nothing was cached"
            )
        try:
            convert_checkpoint(part, dest)
        finally:
            _unlink(part, meta)
        _write_sidecar(dest, sha256_file(dest), url)
        logger.info("converted published checkpoint %s to %s", url, dest)
        return dest


def known_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a loaded weights file: the cache sidecar when valid, else hashed once
    per process (memoised by path, size, mtime and inode)."""
    target = Path(path)
    return _read_sidecar(target) or _file_digest(target)
