"""Journeys: fixtures (the tools are in journeylib.py). Every test here is marked
``journey`` and ``slow``; .ci/run runs them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hubserver import HubServer
from journeylib import Journey


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.journey)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def journey(tmp_path: Path) -> Iterator[Journey]:
    """A fresh user machine with its own local Hub (stoppable, for the offline steps)."""
    server = HubServer().start()
    try:
        yield Journey(home=tmp_path, server=server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsplit ImageFolder (DIR/<class>/*.png) of the embedded digits: 12 per class,
    the way a user's own folder looks before zoo finetune splits it."""
    from zoo_core_plugins.zoonet.digits import export_imagefolder

    return export_imagefolder(tmp_path_factory.mktemp("j") / "digits", per_class=12,
                              split=("all",)) / "all"
