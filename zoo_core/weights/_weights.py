"""Where weights come from, and proof that they are what they claim to be.

:func:`fetch_weights` turns a weights *source* into a local path to a verified
``.safetensors`` file. Sources:

* a local path (file or directory) or a ``file://`` URL;
* an ``http://`` / ``https://`` URL, downloaded once into :func:`cache_dir`
  (:mod:`zoo_core.weights._weights_cache`, :mod:`zoo_core.weights._download`);
* ``hf-hub:org/repo[@revision]``, fetched with ``huggingface_hub`` (its own cache,
  ``HF_HOME``, ``HF_HUB_OFFLINE`` and tokens apply); the cached blob is checked against
  its own name (an LFS blob is named by its sha256, a git blob by its git sha1);
* ``pkg:package.name/relative/path.safetensors``, a file shipped inside an installed
  package (found without importing anything that is not a package).

Only safetensors are ever loaded: pickled checkpoints (``.pth``, ``.pt``, ``.bin``,
``.ckpt``, ``.pkl`` or a file starting with a zip / pickle marker) are refused with a
pointer to :func:`convert_checkpoint` (``zoo convert IN OUT``).

Only the standard library is imported at module level; torch, safetensors,
huggingface_hub and tqdm are imported inside the functions that need them.

>>> is_pickle_path("https://example.com/resnet50.pth?download=1")
True
>>> is_pickle_path("hf-hub:org/repo")
False
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import stat
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from zoo_core._safefs import make_dirs, refuse_link
from zoo_core.errors import InvalidArgumentError, WeightsError
from zoo_core.weights._convert import convert_checkpoint
from zoo_core.weights._digests import DIGESTS as _DIGESTS  # noqa: F401  (tests clear it)
from zoo_core.weights._digests import file_digest as _file_digest
from zoo_core.weights._digests import file_git_sha1, sha256_file
from zoo_core.weights._safetensors_header import CONVERT_HINT as _CONVERT_HINT
from zoo_core.weights._safetensors_header import check_safetensors, is_pickle_path
from zoo_core.weights._safetensors_header import label as _label
from zoo_core.weights._safetensors_header import pickle_refusal as _pickle_refusal
from zoo_core.weights._weights_cache import (
    cache_dir,
    fetch_published_pickle,
    fetch_url,
    known_sha256,
)

__all__ = [
    "cache_dir",
    "check_safetensors",
    "convert_checkpoint",
    "fetch_published_pickle",
    "fetch_weights",
    "is_pickle_path",
    "known_sha256",
    "sha256_file",
]

_SUPPORTED = (
    "a local path or file:// URL to a .safetensors file (or a directory holding one), "
    "an http(s):// URL, hf-hub:org/repo[@revision], or pkg:package.name/path/in/package"
)
_CHUNK = 1 << 20


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
            "print the one to pin with `zoo hash FILE` (or zoo_core.hash_file(FILE))"
        )
    return value


def _verify_file(path: Path, sha256: str | None, *, name: str | None, hint: str) -> None:
    """Structure + pinned digest of a file we do not own (local, package, HF cache)."""
    check_safetensors(path, name=name)
    if sha256 is not None:
        actual = _file_digest(path)
        if actual != sha256:
            raise WeightsError(
                f"sha256 mismatch for {_label(path, name)}: expected {sha256}, got {actual}. {hint}"
            )


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
            return fetch_url(text, pin, progress)
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
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        if isinstance(exc, FileNotFoundError) or isinstance(exc, ValueError):
            raise WeightsError(
                f"weights file not found: {label}; check the path (relative paths are "
                f"resolved against {os.getcwd()}) or use one of: {_SUPPORTED}") from None
        raise WeightsError(f"cannot read weights file {label}: {exc}") from exc
    if stat.S_ISDIR(mode):
        path = _pick_in_directory(path, filename, name=name)
    elif not stat.S_ISREG(mode):  # a FIFO or a device would block in open() or never end
        raise WeightsError(
            f"weights source {label} is not a regular file (a FIFO, socket or device); "
            "point it at a .safetensors file")
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
    named = (" (a directory named like a weights file: pass the .safetensors file itself)"
             if directory.name.endswith(".safetensors") else "")
    raise WeightsError(
        f"directory {label}{named} holds no {filename!r} and no .safetensors file "
        f"(it contains: {shown or 'nothing'}).{extra}"
    )


# --- pkg: -------------------------------------------------------------------------


def _check_is_package(source: str, package: str) -> None:
    """Refuse a name that is not an installed *package* without importing it.

    ``importlib.resources.files("this")`` would import (run) the module ``this`` before
    finding out that it is not a package. Each level is looked up with
    ``find_spec(name, parent.__path__)``, which imports nothing; only real packages along
    the way are imported (by ``resources.files``) afterwards.
    """
    path: list[str] | None = None
    parts = package.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        try:
            spec = importlib.util.find_spec(name) if path is None and depth == 1 else (
                importlib.machinery.PathFinder.find_spec(name, path))
        except (ImportError, ValueError) as exc:
            raise WeightsError(f"{source}: package {name!r} cannot be looked up ({exc})") from exc
        if spec is None:
            raise WeightsError(
                f"{source}: package {name!r} is not installed; install the package that ships "
                "these weights")
        if spec.submodule_search_locations is None:
            raise WeightsError(
                f"{source}: {name!r} is a module, not a package; pkg: sources name a package "
                "directory holding the file (it was not imported)")
        path = list(spec.submodule_search_locations)


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

    _check_is_package(source, package)
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
    if not refuse_link(dest, "cache entry"):
        make_dirs(dest.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, resource.open("rb") as src:
                while block := src.read(_CHUNK):
                    out.write(block)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
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
    import huggingface_hub.constants  # not loaded by `import huggingface_hub`
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

    from zoo_core.weights._offline import offline_error, unreachable

    offline = unreachable(huggingface_hub.constants.ENDPOINT)
    if offline:  # huggingface_hub would retry for 24-40 s: use the cache, or fail now
        kwargs["local_files_only"] = True
    gated = getattr(hf_errors, "GatedRepoError", ())
    offline_mode = getattr(hf_errors, "OfflineModeIsEnabled", ())
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
    except (hf_errors.LocalEntryNotFoundError, offline_mode) as exc:
        if offline:
            raise WeightsError(offline_error(where, offline, hub=True)) from exc
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
    _check_hub_blob(path, repo_id, filename, revision)
    _verify_file(
        path,
        pin,
        name=f"{filename} from {source}",
        hint="Pin an exact commit (hf-hub:org/repo@<commit sha>) that holds the pinned file, "
        "or update the pin.",
    )
    return path




def _check_hub_blob(path: Path, repo_id: str, filename: str, revision: str | None) -> None:
    """A file in the Hugging Face cache must match its blob's name.

    The cache stores each file once under ``blobs/<etag>``: the sha256 of the content for
    an LFS file, git's sha1 blob id for a regular one. A blob whose content no longer
    matches its name was damaged on this disk after download (the Hub checked it then).
    """
    try:
        blob = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return
    if blob.parent.name != "blobs":
        return  # not the standard cache layout (a local_dir copy): nothing to compare with
    name = blob.name
    if re.fullmatch(r"[0-9a-f]{64}", name):
        actual, kind = _file_digest(blob), "sha256"
    elif re.fullmatch(r"[0-9a-f]{40}", name):
        actual, kind = file_git_sha1(blob), "git blob sha1"
    else:
        return
    if actual == name:
        return
    at = f"@{revision}" if revision else ""
    raise WeightsError(
        f"the local Hugging Face cache holds a corrupt copy of {filename!r} of "
        f"{repo_id}{at}: {blob} has {kind} {actual}, but the cache names it {name} (the digest "
        "the Hub sent when it was downloaded). The repo is not at fault; the file was damaged "
        f"on this disk. Delete {blob} and load again to download it afresh "
        "(`zoo cache verify --hf` lists every damaged blob)")
