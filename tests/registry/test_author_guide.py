"""The author's guide in docs/plugins.md holds: its package files, written out as they
stand in the page, installed through their entry point, pass the package's own test."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from safetensors.torch import save_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
PLACEHOLDER = "<the 64 hex digits `zoo hash FILE` prints>"
WEIGHTS = "src/acme_nets/weights/acme_s-digits.safetensors"


def guide_files() -> dict[str, str]:
    """Fenced blocks whose first line is ``# acme-nets/<path>``: path -> text."""
    blocks = re.findall(r"```\w*\n# acme-nets/(\S+)\n(.*?)```", DOC.read_text(encoding="utf-8"),
                        flags=re.S)
    return dict(blocks)


@pytest.mark.slow
def test_the_guides_package_installs_and_passes_its_own_test(tmp_path, monkeypatch):
    files = guide_files()
    assert set(files) == {"pyproject.toml", "src/acme_nets/__init__.py",
                          "tests/test_plugin.py"}
    root = tmp_path / "acme-nets"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    project = tomllib.loads(files["pyproject.toml"])
    # package-data covers the weights file that pkg: names
    patterns = project["tool"]["setuptools"]["package-data"]["acme_nets"]
    assert any(fnmatch.fnmatch(WEIGHTS.split("acme_nets/", 1)[1], p) for p in patterns)
    # `pip install -e .` in miniature: src/ on the path, a dist-info with the entry points
    site = root / "src"
    info = site / "acme_nets-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nets\nVersion: 0.1.0\n",
                                   encoding="utf-8")
    entry_points = project["project"]["entry-points"]["zoo_core"]
    (info / "entry_points.txt").write_text(
        "[zoo_core]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()),
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        import acme_nets

        torch.manual_seed(0)  # the author's "trained" weights
        (root / WEIGHTS).parent.mkdir(parents=True)
        save_file(acme_nets.acme_s(num_classes=10).state_dict(), str(root / WEIGHTS))
        digest = hashlib.sha256((root / WEIGHTS).read_bytes()).hexdigest()
        init = root / "src/acme_nets/__init__.py"
        assert PLACEHOLDER in init.read_text(encoding="utf-8")
        init.write_text(init.read_text(encoding="utf-8").replace(PLACEHOLDER, digest),
                        encoding="utf-8")
        del sys.modules["acme_nets"]
        spec = importlib.util.spec_from_file_location("acme_test_plugin",
                                                      root / "tests/test_plugin.py")
        assert spec is not None and spec.loader is not None
        tests = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tests)
        names = [n for n in vars(tests) if n.startswith("test_")]
        assert len(names) == 2
        for name in names:
            getattr(tests, name)()
        import zoo_core

        (check, *_) = [c for c in zoo_core.check_plugin("acme") if c.model == "acme_s"]
        assert check.notes == ()  # pinned, input declared, no ignored arguments
    finally:
        sys.modules.pop("acme_nets", None)


@pytest.mark.parametrize("rel", ["src/acme_nets/__init__.py", "tests/test_plugin.py"])
def test_the_guides_python_compiles(rel):
    compile(guide_files()[rel], rel, "exec")
