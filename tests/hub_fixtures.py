"""Pytest fixtures for the local Hub of tests/hubserver.py (re-exported by tests/conftest.py):

- `hub_server` (session): one started `HubServer`.
- `hub_env` (function): points the already-imported client at `hub_server` with a fresh
  HF_HOME, and returns a `HubEnv` with helpers (`repo_id()`, `offline()`, `set_upload_mode()`,
  `use_server()`, `fast_retries()`). Everything is restored afterwards.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hub_store import UPLOAD_MODES
from hubserver import HubServer

_REPO_NUMBERS = itertools.count(1)


class HubEnv:
    """What `hub_env` yields: the client is configured for `server` with a fresh HF_HOME."""

    token = "hf_dummy"

    def __init__(self, server: HubServer, monkeypatch: pytest.MonkeyPatch, home: Path):
        self.server, self.home, self._mp = server, home, monkeypatch
        self.cache_dir = home / "hub"  # HF_HUB_CACHE
        self._originals: dict[str, object] = {}
        self._modules_before = set(sys.modules)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    def repo_id(self, name: str = "model", namespace: str = "zoo-test") -> str:
        """A repo id unique for the whole test session (the session server keeps all repos)."""
        return f"{namespace}/{name}-{next(_REPO_NUMBERS)}"

    def offline(self, enabled: bool = True) -> None:
        """HF_HUB_OFFLINE after import: `is_offline_mode()` reads `constants.HF_HUB_OFFLINE`."""
        self._mp.setenv("HF_HUB_OFFLINE", "1" if enabled else "0")
        self._set_constants(HF_HUB_OFFLINE=enabled)

    def disable_xet(self, disabled: bool = True) -> None:
        # hf_xet is chosen by the client, never negotiated: any "lfs" file would go to a Xet
        # storage this server does not have, unless Xet is disabled.
        self._mp.setenv("HF_HUB_DISABLE_XET", "1" if disabled else "0")
        self._set_constants(HF_HUB_DISABLE_XET=disabled)

    def set_upload_mode(self, mode: str) -> None:
        """Server upload mode ("regular", "lfs", "auto"); Xet is disabled unless "regular"."""
        if mode not in UPLOAD_MODES:
            raise ValueError(f"mode must be one of {UPLOAD_MODES}")
        self.server.upload_mode = mode
        self.disable_xet(mode != "regular")

    def fast_retries(self) -> None:
        """Make the client's HTTP backoff retry without sleeping (1+2+4+8+8 s otherwise)."""
        from huggingface_hub.utils import _http

        self._mp.setattr(_http, "time", SimpleNamespace(sleep=lambda seconds: None))

    def use_server(self, server: HubServer) -> None:
        """Point the client at another (e.g. a private, stoppable) server."""
        from huggingface_hub import constants, hf_api

        self.server = server
        endpoint = server.endpoint
        self._mp.setenv("HF_ENDPOINT", endpoint)
        self._set_constants(
            ENDPOINT=endpoint,
            HUGGINGFACE_CO_URL_TEMPLATE=endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            HF_URL_HOSTS=frozenset(constants.HF_URL_HOSTS | {server.host}),
        )
        # Module-level functions (model_info, create_repo, ...) are bound methods of an HfApi
        # created at import, which copied the endpoint.
        self._mp.setattr(hf_api.api, "endpoint", endpoint)

    def _set_constants(self, **values) -> None:
        """Patch huggingface_hub.constants and the copies made by `from ..constants import X`."""
        from huggingface_hub import constants

        modules = [module for name, module in list(sys.modules.items())
                   if name.split(".")[0] == "huggingface_hub" and module is not None]
        for name, value in values.items():
            if not hasattr(constants, name):  # tolerate other huggingface_hub versions
                continue
            original = getattr(constants, name)
            self._originals.setdefault(name, original)
            for module in modules:
                namespace = vars(module)
                if name in namespace and (module is constants or namespace[name] == original):
                    self._mp.setattr(module, name, value)

    def _activate(self) -> None:
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE",
                    "HUGGINGFACE_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH",
                    "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE",
                    "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_XET", "HUGGINGFACE_CO_STAGING"):
            self._mp.delenv(var, raising=False)
        for var, value in {
            "HF_HOME": str(home), "HF_TOKEN": self.token, "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }.items():
            self._mp.setenv(var, value)
        hub, assets = str(home / "hub"), str(home / "assets")
        self._set_constants(
            HF_HOME=str(home), default_cache_path=hub, HF_HUB_CACHE=hub,
            HUGGINGFACE_HUB_CACHE=hub, default_assets_cache_path=assets,
            HF_ASSETS_CACHE=assets, HUGGINGFACE_ASSETS_CACHE=assets,
            default_xet_cache_path=str(home / "xet"), HF_XET_CACHE=str(home / "xet"),
            HF_TOKEN_PATH=str(home / "token"), HF_STORED_TOKENS_PATH=str(home / "stored_tokens"),
            CHECK_FOR_UPDATE_DONE_PATH=str(home / ".check_for_update_done"),
            CHECK_FOR_SKILL_UPDATE_DONE_PATH=str(home / ".check_for_skill_update_done"),
            AGENT_HARNESSES_PATH=str(home / ".agent_harnesses.json"),
            HF_HUB_OFFLINE=False, HF_HUB_DISABLE_XET=False, HF_HUB_DISABLE_TELEMETRY=True,
            HF_HUB_DISABLE_PROGRESS_BARS=True, HF_HUB_DISABLE_UPDATE_CHECK=True,
        )
        self.use_server(self.server)

    def _deactivate(self) -> None:
        # monkeypatch restores what it patched; modules first imported during the test copied
        # patched values (`from ..constants import X`) that it does not know about.
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] == "huggingface_hub" and name not in self._modules_before:
                for constant, original in self._originals.items():
                    if constant in vars(module):
                        setattr(module, constant, original)


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """One local Hub for the whole session; use unique repo ids (`hub_env.repo_id()`)."""
    server = HubServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_env(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[HubEnv]:
    """Client configured for `hub_server` with a fresh HF_HOME; request counters start at zero."""
    upload_mode = hub_server.upload_mode
    hub_server.reset_counters()
    env = HubEnv(hub_server, monkeypatch, tmp_path / "hf_home")
    env._activate()
    try:
        yield env
    finally:
        env._deactivate()
        hub_server.upload_mode = upload_mode
        hub_server.clear_failures()
