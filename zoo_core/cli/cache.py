"""``zoo cache verify`` and ``zoo cache clean``: rehash the caches, remove what is bad.

``verify`` rehashes every downloaded file in zoo_core's cache and compares it with its
sidecar (like ``hf cache verify``), checks the structure of every file, and reports planted
links, non-regular files and entries without a record. With ``--hf`` it also rehashes the
Hugging Face cache's blobs against their names (sha256 for LFS files, git's blob sha1 for
regular ones). It changes nothing and exits 1 when it found a problem.

``clean`` removes what ``verify`` reports as bad (links are unlinked, never followed),
partial downloads older than ``--older-than`` hours, stray temp files and the
``$TMPDIR/zoo-push-*`` copies of killed pushes; ``--all`` empties the download cache.
It never touches the Hugging Face cache (other tools own it).

Only the standard library is imported at module level (``zoo --help`` stays fast).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.errors import WeightsError

__all__ = ["CacheReport", "add_cli", "clean_cache", "verify_cache"]

_AUX = (".sha256", ".part", ".part.meta", ".lock", ".tmp")


@dataclass
class CacheReport:
    """What :func:`verify_cache` found: every file checked, and the bad ones with why."""

    ok: list[Path] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    partial: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def checked(self) -> int:
        return len(self.ok) + len(self.bad)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _why_not_regular(path: Path, st: os.stat_result) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink (to {os.readlink(path)}): planted, never followed"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _check_download(entry: Path, report: CacheReport) -> None:
    """One file of ``downloads/<key>/`` that is not a sidecar, lock or temp file."""
    from zoo_core.weights._digests import sha256_file
    from zoo_core.weights._safetensors_header import check_safetensors
    from zoo_core.weights._weights_cache import read_sidecar, write_sidecar

    try:
        check_safetensors(entry)
        record = read_sidecar(entry)
        if record is None:
            report.bad.append((entry, "no sidecar: not known to be a complete download"))
            return
        digest = sha256_file(entry)
    except (WeightsError, OSError) as exc:
        report.bad.append((entry, str(exc)))
        return
    if digest != record["sha256"]:
        report.bad.append((entry, f"changed since it was downloaded: sha256 recorded "
                                  f"{record['sha256']}, now {digest}"))
        return
    try:
        write_sidecar(entry, digest, str(record.get("source", "")))  # fresh stat key
    except OSError:
        pass
    report.ok.append(entry)


def _walk_downloads(root: Path, report: CacheReport) -> None:
    downloads = root / "downloads"
    st = _lstat(downloads)
    if st is None:
        return
    if (why := _why_not_regular(downloads, st)) and not stat.S_ISDIR(st.st_mode):
        report.bad.append((downloads, why))
        return
    for entry_dir in sorted(downloads.iterdir()):
        dst = _lstat(entry_dir)
        if dst is None:
            continue
        if not stat.S_ISDIR(dst.st_mode):
            report.bad.append((entry_dir, _why_not_regular(entry_dir, dst) or "unexpected"))
            continue
        for path in sorted(entry_dir.iterdir()):
            pst = _lstat(path)
            if pst is None:
                continue
            why = _why_not_regular(path, pst)
            if why:
                report.bad.append((path, why))
            elif path.name.endswith((".part", ".part.meta")):
                report.partial.append(path)
            elif path.name.endswith(_AUX) or path.name.startswith("."):
                continue
            else:
                _check_download(path, report)
        # sidecars without their file
        for side in entry_dir.glob("*.sha256"):
            if not os.path.lexists(side.with_name(side.name[: -len(".sha256")])):
                report.bad.append((side, "sidecar without its file"))


def _walk_hf(report: CacheReport) -> None:
    from huggingface_hub import constants

    from zoo_core.weights._digests import file_git_sha1, sha256_file

    root = Path(constants.HF_HUB_CACHE)
    if not root.is_dir():
        return
    for blobs in sorted(root.glob("*--*/blobs")):
        for blob in sorted(blobs.iterdir()):
            st = _lstat(blob)
            if st is None or blob.name.endswith(".incomplete"):
                continue
            why = _why_not_regular(blob, st)
            if why:
                report.bad.append((blob, why))
                continue
            if re.fullmatch(r"[0-9a-f]{64}", blob.name):
                actual, kind = sha256_file(blob), "sha256"
            elif re.fullmatch(r"[0-9a-f]{40}", blob.name):
                actual, kind = file_git_sha1(blob), "git blob sha1"
            else:
                continue
            if actual == blob.name:
                report.ok.append(blob)
            else:
                report.bad.append((blob, f"{kind} is {actual}, not its name: damaged on this "
                                         "disk; delete it and load the repo again"))


def verify_cache(*, hf: bool = False, root: Path | None = None) -> CacheReport:
    """Rehash zoo_core's download cache (and the Hugging Face cache with ``hf=True``)."""
    from zoo_core.weights._weights_cache import cache_dir

    started = time.perf_counter()
    report = CacheReport()
    _walk_downloads(root or cache_dir(), report)
    pkg = (root or cache_dir()) / "pkg"
    if pkg.is_dir() and not pkg.is_symlink():
        from zoo_core.weights._safetensors_header import check_safetensors

        for path in sorted(pkg.glob("*/*")):
            st = _lstat(path)
            if st is None or path.name.endswith(".tmp") or path.name.startswith("."):
                continue
            why = _why_not_regular(path, st)
            try:
                if why:
                    raise WeightsError(why)
                check_safetensors(path)
                report.ok.append(path)
            except WeightsError as exc:
                report.bad.append((path, str(exc)))
    if hf:
        _walk_hf(report)
    report.seconds = time.perf_counter() - started
    return report


def _remove(path: Path) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # refuses to follow a symlinked root; unlinks links inside
    else:
        path.unlink()  # a link is removed itself, never its target


def clean_cache(*, everything: bool = False, older_than_h: float = 24.0,
                dry_run: bool = False, root: Path | None = None) -> list[tuple[Path, str]]:
    """Remove bad entries (and old partial downloads, temp files, push leftovers)."""
    from zoo_core.hub._push_guard import sweep_push_leftovers
    from zoo_core.weights._weights_cache import cache_dir

    base = root or cache_dir()
    doomed: list[tuple[Path, str]] = []
    if everything:
        for name in ("downloads", "pkg"):
            if os.path.lexists(base / name):
                doomed.append((base / name, "--all"))
    else:
        report = verify_cache(root=base)
        for path, why in report.bad:
            doomed.append((path, why))
            if path.parent.parent.name == "downloads" and not path.name.endswith(_AUX):
                side = path.with_name(path.name + ".sha256")
                if os.path.lexists(side):
                    doomed.append((side, "sidecar of a removed entry"))
        cutoff = time.time() - older_than_h * 3600
        downloads = base / "downloads"
        if downloads.is_dir() and not downloads.is_symlink():
            for path in downloads.glob("*/*"):
                st = _lstat(path)
                if st is None or not stat.S_ISREG(st.st_mode) or st.st_mtime > cutoff:
                    continue
                if path.name.endswith((".part", ".part.meta", ".tmp")):
                    doomed.append((path, f"partial or temp file older than {older_than_h:g} h"))
    seen: set[Path] = set()
    for path, _why in doomed:
        if path in seen:
            continue
        seen.add(path)
        if not dry_run:
            _remove(path)
    if not dry_run:
        doomed += [(p, "copy left by a killed push") for p in sweep_push_leftovers()]
    return doomed


# ------------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo cache verify [--hf]`` and ``zoo cache clean [--all] [--dry-run]``."""
    p = subparsers.add_parser("cache", help="verify or clean the weights caches")
    sub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    v = sub.add_parser("verify", help="rehash every cached file; exit 1 on a problem")
    v.add_argument("--hf", action="store_true",
                   help="also rehash the Hugging Face cache's blobs against their names")
    v.set_defaults(func=_cmd_verify)
    c = sub.add_parser("clean", help="remove bad entries, old partial downloads, leftovers")
    c.add_argument("--all", action="store_true", help="empty zoo_core's download cache")
    c.add_argument("--older-than", type=float, default=24.0, metavar="HOURS",
                   help="age of partial downloads to remove (default 24)")
    c.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    c.set_defaults(func=_cmd_clean)
    return p  # type: ignore[no-any-return]


def _cmd_verify(args: argparse.Namespace) -> int:
    from zoo_core.weights._safetensors_header import printable

    report = verify_cache(hf=args.hf)
    for path, why in report.bad:
        print(f"BAD  {printable(path)}: {printable(why)}")
    for path in report.partial:
        print(f"part {printable(path)} (a download to resume)")
    print(f"{report.checked} files rehashed in {report.seconds:.2f} s: {len(report.ok)} ok, "
          f"{len(report.bad)} bad" + ("; remove them with `zoo cache clean`" if report.bad
                                       else ""))
    return 1 if report.bad else 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from zoo_core.weights._safetensors_header import printable

    removed = clean_cache(everything=args.all, older_than_h=args.older_than,
                          dry_run=args.dry_run)
    for path, why in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {printable(path)}: "
              f"{printable(why)}")
    print(f"{len(removed)} {'entry' if len(removed) == 1 else 'entries'} "
          + ("would be removed" if args.dry_run else "removed"))
    return 0
