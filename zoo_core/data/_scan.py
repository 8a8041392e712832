"""The one walker of image folders: every data folder zoo_core reads goes through it.

``zoo finetune``, ``zoo eval``, ``zoo rank`` and ``zoo finetune --compare`` all list their
images with :func:`scan_classes` (through :func:`zoo_core.data._data.scan_image_folder` or
directly), and every image file is opened through :func:`open_regular`. The rules:

- **The data root is what the user passed**, resolved once: a root that is itself a
  symlink is followed (the user named it). Nothing outside the resolved root is read.
- **Each file counts once.** Files are told apart by device and inode, so a symlink or a
  hard link to an image already found adds nothing, and a symlinked folder already walked
  is not entered again: a loop such as ``DIR/c0/loop -> ..`` ends there instead of
  pulling every other class into ``c0`` (it is reported as skipped, a "symlink loop").
- **A file reached through several paths is labelled by the class folder that really
  holds it.** Real folders are walked first, symlinks after, so ``c1/x.png ->
  ../c0/x.png`` or ``c1/more -> ../c0`` leave ``x.png`` in ``c0`` whatever the names sort
  as; a link adds an image only when no real path of the scan reaches it (a symlink farm
  inside the root, ``train/cat/1.png -> ../../pool/1.png``, works). Hard links are equal
  names of one file: the first in walk order (classes by name) counts. Such duplicates
  are listed in ``duplicates`` and warned about (:class:`zoo_core.data._data.DatasetWarning`).
- **A symlink leaving the root is skipped and counted**, class folders included. A user
  who links a class in from elsewhere (``data/cats -> /mnt/photos/cats``) most likely
  meant it to be read; it is skipped anyway, because the same link is how a stray
  ``ln -s`` pulls a home directory or a whole disk into a training set under one label,
  and a silently larger, mislabelled dataset is worse than a warning. The warning names
  each link and its target and says what to do: copy, move or bind-mount the folder into
  the root (a link the other way, from elsewhere *to* the root, is fine: the root is
  followed). With every class linked in from outside, the "no images" error lists them.
- **Only regular files are images.** FIFOs, sockets and devices are skipped and counted
  from their ``lstat``/``stat`` and never opened (opening a FIFO blocks until a writer
  comes: ``zoo eval`` hung on one named ``x.png``). Empty files and files whose header
  does not read are skipped and counted; a folder named ``x.png`` is a folder like any.
- Hidden names (starting with ``.``) are ignored, as before; unlistable folders and
  unreadable files are skipped and counted.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
                  ".gif")

__all__ = ["IMG_EXTENSIONS", "TreeScan", "header_problem", "is_image_name", "open_regular",
           "scan_classes"]


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _kind(mode: int) -> str | None:
    """``None`` for a regular file, else what it is, in words."""
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, known_regular: bool = False) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file (following symlinks); a FIFO,
    socket or device raises ``OSError`` from its ``stat`` and is never opened.
    ``known_regular``: the caller has just checked (the walker's ``lstat``)."""
    if not known_regular:
        kind = _kind(os.stat(path).st_mode)
        if kind is not None:
            raise OSError(errno.EINVAL, f"not a regular file: {kind}", os.fspath(path))
    fh = open(path, "rb", opener=_nonblocking)  # noqa: SIM115 - returned to the caller
    try:
        kind = _kind(os.fstat(fh.fileno()).st_mode)  # swapped for a FIFO since the stat?
        if kind is not None:
            raise OSError(errno.EINVAL, f"not a regular file: {kind}", os.fspath(path))
    except BaseException:
        fh.close()
        raise
    return fh


def _nonblocking(path: str, flags: int) -> int:
    """Open without blocking: a FIFO swapped in after the ``stat`` cannot hang us."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def header_problem(path: str | os.PathLike[str], *, known_regular: bool = False) -> str | None:
    """Why ``path`` is not a readable image (``None`` if its header reads fine)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_regular(path, known_regular=known_regular) as fh, Image.open(fh) as im:
                w, h = im.size
        if w < 1 or h < 1:
            return f"empty image ({w}x{h})"
    except Exception as exc:  # PIL raises many kinds; all mean "unreadable"
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class TreeScan:
    """What :func:`scan_classes` found: per part (one per folder given) class name ->
    image paths, and the class folders without images; then what was left out."""

    parts: list[dict[str, list[str]]]
    empty: list[list[str]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (link, counted as)


def _inside(real: str, root: str) -> bool:
    try:
        return os.path.commonpath([real, root]) == root
    except ValueError:  # different drives
        return False


class _Walker:
    def __init__(self, root: str | os.PathLike[str], check_images: bool) -> None:
        self.root = os.path.realpath(root)
        self.check = check_images
        self.files: dict[tuple[int, int], str] = {}  # (dev, ino) -> path it counts as
        self.dirs: set[tuple[int, int]] = set()
        self.links: list[tuple[str, tuple[int, str]]] = []  # (link, (part, class))
        self.found: dict[tuple[int, str], list[str]] = {}
        self.skipped: list[tuple[str, str]] = []
        self.duplicates: list[tuple[str, str]] = []

    def mark(self, path: str | os.PathLike[str]) -> None:
        """A folder that is not a class but must not be entered through a link (the root,
        ``train/``, ``val/``)."""
        try:
            st = os.stat(path)
        except OSError:
            return
        self.dirs.add((st.st_dev, st.st_ino))

    def walk(self, path: str, key: tuple[int, str]) -> None:
        """Walk a folder known to be inside the root, without following symlinks (they
        are queued for :meth:`follow_links`)."""
        stack = [path]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
                ident = (st.st_dev, st.st_ino)
                if ident in self.dirs:
                    continue
                self.dirs.add(ident)
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                self.skipped.append((folder, f"cannot list folder: {exc.strerror or exc}"))
                continue
            subdirs = []
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_symlink():
                    self.links.append((e.path, key))
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError as exc:
                    self.skipped.append((e.path, f"cannot stat: {exc.strerror or exc}"))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(e.path)
                elif is_image_name(e.name):
                    self.file(e.path, st, key)
            stack.extend(reversed(subdirs))  # depth first, in name order

    def file(self, path: str, st: os.stat_result, key: tuple[int, str]) -> None:
        kind = _kind(st.st_mode)
        if kind is not None:
            self.skipped.append((path, f"{kind}, not an image file; never opened"))
            return
        ident = (st.st_dev, st.st_ino)
        if ident in self.files:
            self.duplicates.append((path, self.files[ident]))
            return
        self.files[ident] = path
        if st.st_size == 0:
            problem: str | None = "empty file (0 bytes)"
        else:
            problem = header_problem(path, known_regular=True) if self.check else None
        if problem is not None:
            self.skipped.append((path, problem))
        else:
            self.found.setdefault(key, []).append(path)

    def resolve(self, link: str) -> tuple[str, os.stat_result] | None:
        """``(real path, stat)`` of a symlink's target inside the root, or ``None`` (the
        link is recorded as skipped)."""
        try:
            st = os.stat(link)
        except OSError as exc:
            why = ("symlink loop" if exc.errno == errno.ELOOP
                   else f"broken symlink ({exc.strerror or exc})")
            self.skipped.append((link, why))
            return None
        real = os.path.realpath(link)
        if not _inside(real, self.root):
            self.skipped.append((link, f"symlink to {real}, outside the data root "
                                       f"{self.root}: not followed; copy, move or "
                                       "bind-mount it into the root"))
            return None
        return real, st

    def follow_links(self) -> None:
        i = 0
        while i < len(self.links):  # walking a linked folder may queue more links
            link, key = self.links[i]
            i += 1
            got = self.resolve(link)
            if got is None:
                continue
            real, st = got
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in self.dirs:
                    self.walk(link, key)
                elif _inside(os.path.realpath(os.path.dirname(link)), real):
                    self.skipped.append((link, f"symlink loop: leads back to {real}, "
                                               "which holds it; not followed"))
                else:
                    self.duplicates.append((link, real))
            elif is_image_name(os.path.basename(link)):
                self.file(link, st, key)


def scan_classes(root: str | os.PathLike[str], parts: list[Path], *,
                 check_images: bool = True) -> TreeScan:
    """Class folders of each folder in ``parts`` (``DIR``, or ``DIR/train`` and
    ``DIR/val``), all under the data ``root``, walked by the rules of this module.

    A class is a non-hidden sub-folder of a part (a symlink to a folder inside the root
    counts); its images are found recursively.
    """
    w = _Walker(root, check_images)
    w.mark(root)
    for part in parts:
        w.mark(part)
    classes: list[list[str]] = []
    for i, part in enumerate(parts):
        names: list[str] = []
        classes.append(names)
        if not _inside(os.path.realpath(part), w.root):
            w.skipped.append((str(part), f"symlink to {os.path.realpath(part)}, outside the "
                                         f"data root {w.root}; not followed"))
            continue
        try:
            with os.scandir(part) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            w.skipped.append((str(part), f"cannot list folder: {exc.strerror or exc}"))
            entries = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_symlink():
                got = w.resolve(e.path)
                if got is not None and stat.S_ISDIR(got[1].st_mode):
                    names.append(e.name)
                    w.links.append((e.path, (i, e.name)))
            elif e.is_dir(follow_symlinks=False):
                names.append(e.name)
        for name in names:
            if not os.path.islink(os.path.join(part, name)):
                w.walk(os.path.join(part, name), (i, name))
    w.follow_links()
    per_part = [{c: w.found[(i, c)] for c in names if w.found.get((i, c))}
                for i, names in enumerate(classes)]
    empty = [[c for c in names if not w.found.get((i, c))] for i, names in enumerate(classes)]
    return TreeScan(per_part, empty, w.skipped, w.duplicates)


def images_under(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file under ``folder`` (recursive, name order), by the rules of this
    module with ``folder`` as the root: each file once, no loops, nothing outside it, no
    FIFO or device opened. Headers are not read (``zoo predict`` reports what fails to
    decode by name)."""
    w = _Walker(folder, check_images=False)
    w.walk(str(folder), (0, ""))
    w.follow_links()
    return sorted(w.found.get((0, ""), []))
