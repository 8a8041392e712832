"""Data folders are scanned safely (issue 17): one bad input per test, through the shared
walker (:mod:`zoo_core.data._scan`), then the whole bad tree through the real ``zoo finetune``,
``zoo eval`` and ``zoo rank`` commands in subprocesses with a time bound (a FIFO must not
hang them)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_core.data._data import BadImageWarning, DatasetError, DatasetWarning, scan_image_folder

CLASSES = ("c0", "c1", "c2")
PER_CLASS = 4
ZOO = str(Path(sys.executable).parent / "zoo")


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def _tree(root: Path) -> Path:
    """3 classes of 4 good images each."""
    for ci, c in enumerate(CLASSES):
        for i in range(PER_CLASS):
            _png(root / c / f"{i}.png", seed=10 * ci + i)
    return root


def _scan(root: Path, bound_s: float = 20.0):
    """scan_image_folder in a thread with a time bound: ``(folder, warnings)``; a hang
    fails the test instead of blocking it."""
    box: dict = {}

    def run():
        try:
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                box["folder"] = scan_image_folder(root)
            box["warnings"] = [(w.category, str(w.message)) for w in rec]
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound_s)
    assert not t.is_alive(), f"scanning {root} hung"
    if "exc" in box:
        raise box["exc"]
    return box["folder"], box["warnings"]


def _labelled(folder) -> dict[str, str]:
    """path (relative to the root) -> class name, over train and val."""
    return {os.path.relpath(p, folder.root): folder.classes[lab]
            for p, lab in folder.train + folder.val}


def _clean(folder) -> None:
    """Exactly the 12 good images, each under its own class."""
    assert _labelled(folder) == {f"{c}/{i}.png": c for c in CLASSES for i in range(PER_CLASS)}


def _skipped(folder) -> dict[str, str]:
    return {os.path.relpath(p, folder.root): why for p, why in folder.skipped}


def _said(warns, category, *parts: str) -> bool:
    return any(issubclass(c, category) and all(p in m for p in parts) for c, m in warns)


# ---------------------------------------------------------------------- symlinks


def test_symlink_loop_is_not_followed(tmp_path):
    """``ln -s .. DIR/c0/loop`` made 3,280 images of 80, other classes labelled c0."""
    root = _tree(tmp_path / "d")
    os.symlink("..", root / "c0" / "loop")
    os.symlink(".", root / "c1" / "self")
    folder, warns = _scan(root)
    _clean(folder)
    assert set(_skipped(folder)) == {"c0/loop", "c1/self"}
    assert all("symlink loop" in why for why in _skipped(folder).values())
    assert _said(warns, DatasetWarning, "2 symlink(s)", "c0/loop", "symlink loop")


def test_symlink_to_a_sibling_class_counts_once_under_the_real_folder(tmp_path):
    """A file (or folder) linked into another class counts once, labelled by the class
    folder that really holds it, whatever the names sort as (``a_alias`` sorts first)."""
    root = _tree(tmp_path / "d")
    os.symlink("../c2/0.png", root / "c0" / "a_alias.png")
    os.symlink("../c1", root / "c0" / "a_more")
    os.symlink("c0", root / "c3")  # a whole class folder linked under another name
    folder, warns = _scan(root)
    _clean(folder)
    assert folder.classes == CLASSES and folder.ignored_classes == ("c3",)
    assert {os.path.relpath(a, root) for a, _ in folder.duplicates} == \
        {"c0/a_alias.png", "c0/a_more", "c3"}
    assert folder.skipped == ()
    assert _said(warns, DatasetWarning, "3 link(s)", "c0/a_alias.png", "counts once")


def test_link_from_train_to_val_counts_once_in_val(tmp_path):
    """A validation image linked into train stays a validation image only (no leak)."""
    _tree(tmp_path / "d" / "train")
    _tree(tmp_path / "d" / "val")
    os.symlink("../../val/c1/0.png", tmp_path / "d" / "train" / "c0" / "leak.png")
    folder, warns = _scan(tmp_path / "d")
    assert len(folder.train) == len(folder.val) == 12
    assert "train/c0/leak.png" not in _labelled(folder)
    assert _labelled(folder)["val/c1/0.png"] == "c1"
    assert _said(warns, DatasetWarning, "train/c0/leak.png", "counts once")


def test_hard_link_counts_once(tmp_path):
    """Hard links are equal names of one file: the first in walk order counts."""
    root = _tree(tmp_path / "d")
    os.link(root / "c1" / "1.png", root / "c2" / "z.png")
    folder, _ = _scan(root)
    _clean(folder)
    assert [os.path.relpath(a, root) for a, _ in folder.duplicates] == ["c2/z.png"]


def test_symlinks_leaving_the_root_are_skipped_and_counted(tmp_path):
    root = _tree(tmp_path / "d")
    outside = _tree(tmp_path / "elsewhere")
    os.symlink(outside / "c0", root / "c4")  # a class folder from elsewhere
    os.symlink(outside / "c1", root / "c1" / "more")  # a folder inside a class
    os.symlink(outside / "c2" / "0.png", root / "c2" / "far.png")  # one file
    os.symlink("../../elsewhere", root / "c0" / "up")  # relative, still outside
    folder, warns = _scan(root)
    _clean(folder)
    skipped = _skipped(folder)
    assert set(skipped) == {"c4", "c1/more", "c2/far.png", "c0/up"}
    assert all("outside the data root" in why for why in skipped.values())
    assert _said(warns, DatasetWarning, "4 symlink(s)", "c4", "outside the data root")


def test_every_class_linked_from_outside_is_a_clear_error(tmp_path):
    outside = _tree(tmp_path / "elsewhere")
    (tmp_path / "d").mkdir()
    for c in CLASSES:
        os.symlink(outside / c, tmp_path / "d" / c)
    with pytest.raises(DatasetError, match=r"no images found.*3 skipped.*d/c0 \(symlink to "
                       r".*elsewhere/c0, outside the data root.*copy, move or bind-mount"):
        _scan(tmp_path / "d")


def test_a_symlinked_root_is_followed(tmp_path):
    """The user named the link: its target is the data root."""
    real = _tree(tmp_path / "real")
    os.symlink(real, tmp_path / "link")
    folder, warns = _scan(tmp_path / "link")
    _clean(folder)
    assert folder.skipped == () and warns == []


def test_symlink_farm_inside_the_root_works(tmp_path):
    """Links to files that no real path of the scan reaches (a hidden pool inside the
    root) are the images, under the class of the link."""
    root = tmp_path / "d"
    for ci, c in enumerate(CLASSES):
        for i in range(PER_CLASS):
            _png(root / ".pool" / f"{c}-{i}.png", seed=10 * ci + i)
            (root / c).mkdir(exist_ok=True)
            os.symlink(f"../.pool/{c}-{i}.png", root / c / f"{i}.png")
    folder, warns = _scan(root)
    _clean(folder)
    assert warns == []


def test_broken_symlink_is_skipped_and_counted(tmp_path):
    root = _tree(tmp_path / "d")
    os.symlink("nowhere.png", root / "c0" / "gone.png")
    folder, _ = _scan(root)
    _clean(folder)
    assert "broken symlink" in _skipped(folder)["c0/gone.png"]


# ---------------------------------------------------------------------- special files


def test_fifo_named_png_is_skipped_without_opening_it(tmp_path):
    """Opening a FIFO blocks until a writer comes: zoo eval hung on one in the scan."""
    root = _tree(tmp_path / "d")
    os.mkfifo(root / "c0" / "x.png")
    folder, warns = _scan(root, bound_s=20)
    _clean(folder)
    assert "FIFO" in _skipped(folder)["c0/x.png"]
    assert _said(warns, BadImageWarning, "c0/x.png", "FIFO")


def test_socket_named_png_is_skipped(tmp_path, monkeypatch):
    root = _tree(tmp_path / "d")
    monkeypatch.chdir(root / "c1")  # AF_UNIX paths are short: bind a relative name
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("sock.png")
        folder, _ = _scan(root)
    _clean(folder)
    assert "socket" in _skipped(folder)["c1/sock.png"]


def test_device_named_png_is_skipped(tmp_path):
    root = _tree(tmp_path / "d")
    try:
        os.mknod(root / "c1" / "null.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    folder, _ = _scan(root)
    _clean(folder)
    assert "character device" in _skipped(folder)["c1/null.png"]


def test_empty_files_are_skipped_and_hidden_ones_ignored(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "c0" / "empty.png").write_bytes(b"")
    (root / "c0" / ".png").write_bytes(b"")  # hidden, like macOS ._ files: ignored
    folder, _ = _scan(root)
    _clean(folder)
    assert _skipped(folder) == {"c0/empty.png": "empty file (0 bytes)"}


def test_directory_named_png_is_a_folder(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "c0" / "empty.png").mkdir()
    _png(root / "c1" / "more.png" / "inside.png", seed=99)
    folder, _ = _scan(root)
    labelled = _labelled(folder)
    assert labelled.pop("c1/more.png/inside.png") == "c1"
    assert len(labelled) == 12 and folder.skipped == ()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_file_is_skipped(tmp_path):
    root = _tree(tmp_path / "d")
    locked = _png(root / "c2" / "locked.png", seed=5)
    locked.chmod(0)
    try:
        folder, _ = _scan(root)
    finally:
        locked.chmod(0o644)
    _clean(folder)
    assert "PermissionError" in _skipped(folder)["c2/locked.png"]


def test_a_file_that_refuses_to_open_is_skipped(tmp_path, monkeypatch):
    """The chmod 000 case where the tests run as root: the open itself is denied."""
    root = _tree(tmp_path / "d")
    locked = str(_png(root / "c2" / "locked.png", seed=5))
    real_open = os.open

    def deny(path, flags, *args, **kw):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    folder, warns = _scan(root)
    _clean(folder)
    assert "PermissionError" in _skipped(folder)["c2/locked.png"]
    assert _said(warns, BadImageWarning, "c2/locked.png")


def test_a_tree_of_only_bad_files_says_what_was_skipped(tmp_path):
    root = tmp_path / "d"
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        os.mkfifo(root / c / "x.png")
    with pytest.raises(DatasetError, match=r"no images found.*3 skipped.*FIFO"):
        _scan(root)


def test_predict_refuses_a_fifo_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    proc = subprocess.run([ZOO, "predict", "zoonet_s", "x.png"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("zoo: error: not a regular file") and "x.png" in proc.stderr


# ---------------------------------------------------------------------- decoding


@pytest.mark.slow
def test_rank_skips_an_image_that_fails_to_decode(tmp_path):
    """Its header reads (so the scan keeps it), its pixels do not: counted, named, and the
    ranking goes on."""
    import zoo_core

    root = tmp_path / "d"
    _tree(root / "train")
    _tree(root / "val")
    good = (root / "train" / "c0" / "0.png").read_bytes()
    (root / "train" / "c0" / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(BadImageWarning, match=r"1 sampled image.*train/c0/trunc\.png"):
        r = zoo_core.rank_models(root, ["zoonet_s.glyphs"], cache=False, per_class=5)
    assert r.bad_images == 1 and r.bad_links == 0 and r.rows[0].status == "measured"
    assert r.as_dict()["skipped_images"] == [[str(root / "train/c0/trunc.png"),
                                              "failed to decode"]]
    assert "1 unreadable image(s) skipped" in r.summary()


# ---------------------------------------------------------------------- the journey


def _bad_tree(root: Path, outside: Path) -> dict[str, str]:
    """Every bad input at once; returns skipped name -> a word its reason must hold."""
    _tree(root)
    _tree(outside)
    os.symlink("..", root / "c0" / "loop")
    os.symlink("../c0/0.png", root / "c1" / "alias.png")
    os.symlink(outside / "c1", root / "c2" / "out")
    os.mkfifo(root / "c0" / "x.png")
    here = os.getcwd()
    os.chdir(root / "c1")
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("sock.png")  # the socket file stays after close
    finally:
        os.chdir(here)
    good = (root / "c2" / "0.png").read_bytes()
    (root / "c2" / "trunc.png").write_bytes(good[: len(good) // 2])
    (root / "c2" / "empty.png").write_bytes(b"")
    (root / "c2" / "dir.png").mkdir()
    expect = {"c0/loop": "loop", "c2/out": "outside", "c0/x.png": "FIFO",
              "c1/sock.png": "socket", "c2/empty.png": "empty", "c2/trunc.png": "truncated"}
    if os.geteuid() != 0:
        _png(root / "c1" / "locked.png", seed=7).chmod(0)
        expect["c1/locked.png"] = "PermissionError"
    return expect


def _zoo(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([ZOO, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_bad_tree_through_finetune_eval_and_rank(tmp_path):
    """The real commands, fresh caches, a time bound: every bad input is skipped and
    counted by name, the good images are all there once, none is labelled twice."""
    root, outside = tmp_path / "d", tmp_path / "elsewhere"
    expect = _bad_tree(root, outside)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"),
           "ZOO_CORE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    try:
        ft = _zoo("finetune", "zoonet_s", "--data", "d", "--strategy", "linear_probe",
                  "--epochs", "1", "--no-progress", "--out", "o", cwd=tmp_path, env=env)
        # --include-train: every good image is scored, the run's training ones included
        ev = _zoo("eval", "o/best", "--data", "d", "--include-train", cwd=tmp_path, env=env)
        rk = _zoo("rank", "--data", "d", "--models", "zoonet_s", "--json", "--no-progress",
                  "--no-cache", cwd=tmp_path, env=env)
    finally:
        if (root / "c1" / "locked.png").exists():
            (root / "c1" / "locked.png").chmod(0o644)
    scan_skips = {k: v for k, v in expect.items() if k != "c2/trunc.png"}

    def _rel(path: str) -> str:  # the commands ran in tmp_path with --data d
        return os.path.relpath(tmp_path / path, root)

    # finetune: 12 good + the truncated one scanned; the truncated one fails to decode
    assert "(3 classes, 10 train / 3 val images)" in ft.stdout, ft.stdout
    assert f"skipped    {len(expect)} file(s)" in ft.stdout, ft.stdout
    assert "c2/trunc.png" in ft.stderr and "c0/loop" in ft.stderr and "c0/x.png" in ft.stderr
    assert (tmp_path / "o" / "best" / "model.safetensors").is_file()
    # eval: every good image once under its own class; every bad one skipped by name
    assert "accuracy" in ev.stdout and f"skipped    {len(expect)} file(s), not counted: " \
        "d/c0/x.png (a FIFO" in ev.stdout, ev.stdout
    res = json.loads((tmp_path / "o" / "best" / "eval" / "metrics.json").read_text())
    assert res["num_images"] == 12
    assert {c: int(r["support"]) for c, r in res["per_class"].items()} == \
        dict.fromkeys(CLASSES, PER_CLASS)
    got = {_rel(p): why for p, why in res["skipped"]}
    assert set(got) == set(expect), got
    for name, word in expect.items():
        assert word in got[name], (name, got[name])
    assert [_rel(a) for a, _ in res["duplicates"]] == ["c1/alias.png"]
    assert "failed to decode" in ev.stderr and "c2/trunc.png" in ev.stderr
    # rank: the same scan; links counted apart from unreadable files
    r = json.loads(rk.stdout)
    assert r["num_train"] == 10 and r["rows"][0]["status"] == "measured"
    named = {_rel(p) for p, _ in r["skipped_images"]}
    assert set(scan_skips) <= named <= set(expect)
    assert r["bad_links"] == 2 and r["bad_images"] == len(named) - 2


def test_predict_on_a_folder_skips_fifos_loops_and_outside_links(tmp_path):
    """zoo predict FOLDER walks it with the same rules: a FIFO inside is never opened (no
    hang), a loop is not followed, a link out of the folder is not read."""
    folder, outside = tmp_path / "imgs", tmp_path / "elsewhere"
    _png(folder / "a.png", seed=1)
    _png(folder / "sub" / "b.png", seed=2)
    _png(outside / "c.png", seed=3)
    os.mkfifo(folder / "x.png")
    (folder / "sub" / "loop").symlink_to("..")
    (folder / "out.png").symlink_to(outside / "c.png")
    proc = subprocess.run([ZOO, "predict", "zoonet_s", str(folder), "--json", "--top-k", "1"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ZOO_CORE_CACHE": str(tmp_path / "cache"),
                               "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [Path(r["image"]).relative_to(folder).as_posix() for r in rows] == \
        ["a.png", "sub/b.png"]
