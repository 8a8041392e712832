"""The fast build pauses the cyclic garbage collector while it constructs and loads, and
leaves it as it found it: enabled after a build (also a failed or a fallen-back one),
still disabled where the caller had disabled it."""

from __future__ import annotations

import gc

import pytest

torch = pytest.importorskip("torch")

from fastload_archs import (  # noqa: E402
    FILE_CLASSES,
    TinyCNN,
    weights_fixture,  # noqa: E402, F401  (the session fixture)
)

from zoo_core.build._fastload import build_and_load  # noqa: E402
from zoo_core.errors import WeightsError  # noqa: E402


@pytest.fixture(autouse=True)
def _gc_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_paused_during_a_fast_build_and_enabled_after(weights):
    seen = []

    def construct():
        seen.append(gc.isenabled())
        return TinyCNN(FILE_CLASSES)

    gc.enable()
    model, rep = build_and_load(construct, weights("tiny-cnn"), head="fc")
    assert rep.fast_path and seen == [False] and gc.isenabled()
    # a collector the caller disabled stays disabled
    gc.disable()
    seen.clear()
    build_and_load(construct, weights("tiny-cnn"), head="fc")
    assert seen == [False] and not gc.isenabled()


def test_the_collector_is_enabled_again_after_a_failed_or_fallen_back_build(weights, tmp_path):
    gc.enable()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 7)
    with pytest.raises(WeightsError):
        build_and_load(lambda: TinyCNN(FILE_CLASSES), str(bad), head="fc")
    assert gc.isenabled()

    def fails_on_meta():
        if not gc.isenabled():  # the fast attempt: fall back to the normal path
            raise RuntimeError("cannot be built on meta")
        return TinyCNN(FILE_CLASSES)

    model, rep = build_and_load(fails_on_meta, weights("tiny-cnn"), head="fc")
    assert not rep.fast_path and "cannot be built on meta" in rep.fallback_reason
    assert gc.isenabled()
