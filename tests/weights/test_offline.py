"""Without network, a pretrained build fails in under 2 s (not 24-40 s of retries) with a
message that says what to do; cached files still load."""

from __future__ import annotations

import socket
import time

import pytest

torch = pytest.importorskip("torch")

import zoo_core  # noqa: E402
from zoo_core.errors import HubError, WeightsError  # noqa: E402
from zoo_core.weights import _offline  # noqa: E402

BOUND_S = 2.0
ADVICE = r"weights=None.*strategy='scratch'"


@pytest.fixture
def dead_port() -> int:
    """A 127.0.0.1 port nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _warm_and_forget(monkeypatch: pytest.MonkeyPatch) -> None:
    zoo_core.build_model("zoonet_s", num_classes=2, strategy="scratch")  # imports, not timed
    monkeypatch.setattr(_offline, "_seen", {})
    for var in ("ZOO_CORE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _timed(call, error, match):
    start = time.monotonic()
    with pytest.raises(error, match=match) as info:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < BOUND_S, f"took {elapsed:.1f} s"
    return info.value


def test_url_weights_with_refused_connection_fail_fast(dead_port, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "cache"))
    url = f"http://127.0.0.1:{dead_port}/w.safetensors"
    err = _timed(lambda: zoo_core.build_model("zoonet_s", 3, "finetune", weights=url),
                 WeightsError, f"no network \\(connection refused\\).*{ADVICE}")
    assert url in str(err)


@pytest.mark.parametrize("var", ["ZOO_CORE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_switch_means_no_download_attempt(var, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(var, "1")
    _timed(lambda: zoo_core.build_model("zoonet_s", 3, "finetune",
                                        weights="http://example.invalid/w.safetensors"),
           WeightsError, f"{var}=1 is set.*{ADVICE}")


def test_unresolvable_host_is_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "cache"))
    _timed(lambda: zoo_core.build_model("zoonet_s", 3, "finetune",
                                        weights="http://zoo-core-test.invalid/w.safetensors"),
           WeightsError, f"does not resolve.*{ADVICE}")


def _point_hub_at(hub_env, port: int) -> None:
    from types import SimpleNamespace

    hub_env.use_server(SimpleNamespace(endpoint=f"http://127.0.0.1:{port}", host="127.0.0.1"))


def test_hub_weights_and_repos_fail_fast_when_the_hub_is_down(hub_env, dead_port):
    _point_hub_at(hub_env, dead_port)
    _timed(lambda: zoo_core.build_model("zoonet_s", 3, "finetune",
                                        weights="hf-hub:org/weights"),
           WeightsError, f"local Hugging Face cache.*{ADVICE}.*HF_ENDPOINT")
    _timed(lambda: zoo_core.build_model("hf-hub:org/model"), HubError,
           f"config.json: no network \\(127.0.0.1:{dead_port}: connection refused\\)")


def test_cached_hub_repo_loads_when_the_hub_is_down(hub_env, dead_port):
    model = zoo_core.build_model("zoonet_s", 3, "finetune", in_chans=1)
    repo = hub_env.repo_id("offline-cached")
    zoo_core.push_to_hub(model, repo)
    first = zoo_core.build_model(f"hf-hub:{repo}")
    _point_hub_at(hub_env, dead_port)
    start = time.monotonic()
    again = zoo_core.build_model(f"hf-hub:{repo}")
    assert time.monotonic() - start < BOUND_S
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(again.eval()(x), first.eval()(x))


def test_slow_or_odd_failures_are_not_called_offline():
    assert _offline.reason_of(TimeoutError("timed out")) is None
    assert _offline.reason_of(OSError("disk")) is None
    assert _offline.reason_of(socket.gaierror(-2, "Name or service not known"))
    assert _offline.unreachable("file:///x") is None
