"""Shared fixtures: a fresh registry per test, throwaway plugin distributions, caches."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from adversary import bad_server  # noqa: F401  (fixture for the adversarial tests)
from hub_fixtures import hub_env, hub_server  # noqa: E402,F401  (fixtures for Hub tests)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto``) each worker is one process per
    core: one torch thread each, and one for the processes tests start, or the workers'
    threads oversubscribe the cores and small-model training slows many times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker hands its tally of bad inputs to the controller (``pytest_testnodedown``)."""
    from adversary import TALLY

    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["adversary_tally"] = dict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist controller: add a finished worker's tally to the session's."""
    from adversary import TALLY

    TALLY.update(getattr(node, "workeroutput", {}).get("adversary_tally", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The tally of tests/*/test_adversarial_*.py: every bad input tried, by outcome."""
    from adversary import tally_line

    line = tally_line()
    if line:
        terminalreporter.write_sep("-", "adversarial inputs")
        terminalreporter.write_line(line)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny convolutions: one torch thread is faster and immune to a loaded machine.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded target task, small: digits 5-9, 6 training images per class, val 20%
    of all; written once per test module."""
    from zoo_core_plugins.zoonet.digits import export_imagefolder

    return export_imagefolder(tmp_path_factory.mktemp("d") / "digits", per_class=6)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session: timm's name list is built once, not per test."""
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> Iterator[None]:
    """Every test starts with no default registry and no plugin switches set."""
    from zoo_core.registry import _registry

    for var in ("ZOO_CORE_STRICT_PLUGINS", "ZOO_CORE_PLUGINS", "ZOO_CORE_BLOCK_PLUGINS",
                "ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD", "ZOO_CORE_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_CORE_CACHE", str(session_cache))
    _registry.reset_registry()
    yield
    _registry.reset_registry()


MakeDist = Callable[..., Path]


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Install a throwaway plugin distribution: a module plus a ``*.dist-info`` with
    ``entry_points.txt`` on a temporary ``sys.path`` entry, found by importlib.metadata.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    added: list[str] = []

    def make(dist: str, module: str, source: str, *, entry_name: str | None = None,
             version: str = "1.0") -> Path:
        (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(
            f"[zoo_core]\n{entry_name or module} = {module}\n", encoding="utf-8")
        added.append(module)
        importlib.invalidate_caches()
        return root

    yield make
    for module in added:
        sys.modules.pop(module, None)


TINY_PLUGIN = '''
import zoo_core

@zoo_core.hookimpl
def register_backbones(register):
    register(zoo_core.BackboneSpec(
        name="{name}",
        builder="{module}:make",
        head="head",
        stages=("stem", "body"),
        data_config=zoo_core.DataConfig(input_size=(3, 16, 16)),
    ))

def make(num_classes):
    import torch.nn as nn
    m = nn.Module()
    m.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    m.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten())
    m.head = nn.Linear(8, num_classes)
    def forward(x):
        return m.head(m.body(m.stem(x)))
    m.forward = forward
    return m
'''


@pytest.fixture
def tiny_plugin_source() -> Callable[[str, str], str]:
    return lambda name, module: TINY_PLUGIN.replace("{name}", name).replace("{module}", module)
