"""Bad inputs against Hub loading and pushing, and against registry.toml (issue 11).

Each one goes through :func:`adversary.attempt`, which counts it; the session prints the
tally. The Hub is the local server of tests/hubserver.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from adversary import REPO_ROOT, attempt, flip_keep_stat, isolate
from hubserver import HubServer, _json

import zoo_core
from zoo_core.errors import ConfigError, HubError, InvalidArgumentError, WeightsError
from zoo_core.registry._catalog import load_catalog


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)


class _HangingHub(HubServer):
    """A Hub whose commit endpoint never answers (until released)."""

    release = threading.Event()

    def _h_commit(self, req, body, *args):
        self.release.wait(30)
        return _json({"error": "released at teardown"}, 500)  # nothing is committed


def test_push_to_a_server_that_never_answers_times_out(hub_env, monkeypatch, tmp_path):
    server = _HangingHub().start()
    server._httpd.handle_error = lambda *args: None  # the client hung up, on purpose
    try:
        hub_env.use_server(server)
        hub_env.fast_retries()  # huggingface_hub retries a timed-out commit 5 times
        monkeypatch.setenv("ZOO_CORE_PUSH_TIMEOUT", "1")
        model = zoo_core.build_model("zoonet_s", 3, "finetune")
        attempt("commit never answered", lambda: zoo_core.push_to_hub(model, "org/hang"),
                error=HubError, match=r"timed out: no answer within 1 s.*ZOO_CORE_PUSH_TIMEOUT",
                bound_s=30)
    finally:
        _HangingHub.release.set()
        server.stop()


def test_push_leftovers_of_killed_processes_are_swept(tmp_path, monkeypatch):
    import tempfile

    from zoo_core.hub._push_guard import sweep_push_leftovers

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    script = ("import os, signal, zoo_core.hub._push_guard as g\n"
              "d = g.push_tmpdir()\n"
              "open(os.path.join(d.name, 'model.safetensors'), 'wb').write(b'x' * 1000)\n"
              "print(d.name, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -signal.SIGKILL
    left = Path(out.stdout.strip())
    assert left.is_dir() and left.name.startswith("zoo-push-")
    mine = tmp_path / f"zoo-push-{os.getpid()}-live"
    mine.mkdir()
    assert sweep_push_leftovers() == [left]
    assert not left.exists() and mine.exists()  # a live process's copy stays


# ------------------------------------------------------------------- Hub: blobs


def _hub_blob(hub_env, repo: str, filename: str = "model.safetensors") -> Path:
    snapshots = hub_env.cache_dir / f"models--{repo.replace('/', '--')}" / "snapshots"
    (link,) = list(snapshots.glob(f"*/{filename}"))
    return Path(os.path.realpath(link))


HTTPX_LFS_WARNING = "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"


@pytest.mark.parametrize("mode", [
    "regular", pytest.param("lfs", marks=pytest.mark.filterwarnings(HTTPX_LFS_WARNING))])
def test_corrupt_hf_cache_blob_blames_the_cache(hub_env, mode):
    hub_env.set_upload_mode(mode)
    repo = hub_env.repo_id("blob")
    model = zoo_core.build_model("zoonet_s", 3, "finetune")
    zoo_core.push_to_hub(model, repo)
    zoo_core.build_model(f"hf-hub:{repo}")
    blob = _hub_blob(hub_env, repo)
    assert len(blob.name) == (64 if mode == "lfs" else 40)
    flip_keep_stat(blob, offset=-3)
    exc = attempt(f"corrupt HF cache blob ({mode})",
                  lambda: zoo_core.build_model(f"hf-hub:{repo}"), error=WeightsError,
                  match=r"local Hugging Face cache holds a corrupt copy.*The repo is not at "
                        r"fault.*Delete .*and load again")
    assert "do not belong together" not in str(exc)
    blob.unlink()  # what the message says to do
    assert zoo_core.build_model(f"hf-hub:{repo}").zoo.num_classes == 3


@pytest.mark.filterwarnings(HTTPX_LFS_WARNING)
def test_corrupt_blob_of_a_timm_repo_does_not_load(hub_env):
    hub_env.set_upload_mode("lfs")
    repo = hub_env.repo_id("timm-blob")
    zoo_core.push_to_hub(zoo_core.build_model("timm/test_resnet", 3, "scratch"), repo)
    config = json.loads(hub_env.server.files(repo)["config.json"])
    del config["zoo_core"]  # as timm's own push_to_hf_hub writes it: no pin of ours
    from huggingface_hub import CommitOperationAdd

    update = CommitOperationAdd("config.json", json.dumps(config).encode())
    hub_env.api.create_commit(repo, [update], commit_message="timm-style config")
    zoo_core.build_model(f"hf-hub:{repo}")
    blob = _hub_blob(hub_env, repo)
    flip_keep_stat(blob, offset=-3)
    attempt("corrupt HF cache blob (timm repo)", lambda: zoo_core.build_model(f"hf-hub:{repo}"),
            error=WeightsError, match=r"corrupt copy.*sha256")
    from zoo_core.cli.cache import verify_cache

    assert blob in [p for p, _ in verify_cache(hf=True).bad]


# --------------------------------------------------------- Hub: untrusted config.json


def _raw_repo(hub_env, name: str, config: bytes | dict, weights: bytes = b"") -> str:
    from huggingface_hub import CommitOperationAdd

    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    repo = hub_env.repo_id(name)
    hub_env.api.create_repo(repo)
    files = {"config.json": data, **({"model.safetensors": weights} if weights else {})}
    hub_env.api.create_commit(repo, [CommitOperationAdd(p, d) for p, d in files.items()],
                              commit_message="raw")
    return repo


@pytest.fixture(scope="module")
def zoonet_config(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    zoo_core.save_pretrained(zoo_core.build_model("zoonet_s", 3, "finetune"), out / "m")
    return json.loads((out / "m" / "config.json").read_text())


def test_untrusted_config_json_is_bounded_and_checked(hub_env, zoonet_config):
    def load(name, config, **kw):
        repo = _raw_repo(hub_env, name, config)
        return lambda: zoo_core.build_model(f"hf-hub:{repo}", **kw)

    attempt("100,000 nested [", load("deep", b"[" * 100_000 + b"]" * 100_000), error=HubError,
            match=r"config.json of .* cannot be read as JSON: nested deeper than 32 levels")
    attempt("config.json not UTF-8", load("latin", b'{"a": "\xe9"}'), error=HubError,
            match="cannot be read as JSON")

    def variant(path: str, value) -> dict:
        config = json.loads(json.dumps(zoonet_config))
        target = config
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
        return config

    for field, value, pattern in [
        ("num_classes", 10**12, r"num_classes is 1000000000000, outside 1 .. 1000000"),
        ("num_classes", 0, r"num_classes is 0, outside"),
        ("num_classes", "3", r"num_classes must be an integer"),
        ("pretrained_cfg.num_classes", 10**7, r"pretrained_cfg.num_classes is 10000000"),
        ("pretrained_cfg.mean", [float("nan"), 0.5, 0.5], r"pretrained_cfg.mean holds a "
                                                          r"non-finite value"),
        ("pretrained_cfg.std", [0.2, 0.0, 0.2], r"pretrained_cfg.std must be > 0"),
        ("pretrained_cfg.std", [-1, -1, -1], r"pretrained_cfg.std must be > 0"),
        ("pretrained_cfg.mean", [0.5, 0.5], r"pretrained_cfg.mean has 2 values for 3 input"),
        ("pretrained_cfg.input_size", [3, 0, 32], r"pretrained_cfg.input_size must be"),
        ("pretrained_cfg.input_size", [3, 10**6, 32], r"sides 1 .. 8192"),
        ("pretrained_cfg.input_size", "3x32x32", r"pretrained_cfg.input_size must be"),
    ]:
        attempt(f"config.json {field}={value!r}", load("cfg", variant(field, value)),
                error=HubError, match=pattern)
    attempt("num_classes=10**12 asked by the caller",
            lambda: zoo_core.build_model("zoonet_s", 10**12, "finetune"),
            error=InvalidArgumentError, match=r"above the limit of 1000000.*max_num_classes")

    lure = variant("zoo_core.plugin", "vision_extra")
    lure["zoo_core"]["distribution"] = "zoo-core-vision"
    attempt("plugin named by the repo (typosquatting lure)", load("lure", lure), error=HubError,
            match=r"'zoo-core-vision'.*not verified", absent=("pip install",))


# --------------------------------------------------------------------- registry.toml

PIN = '[weights.zoonet_s.mine]\nsource = "/srv/w.safetensors"\n'


@pytest.mark.parametrize("text,line,key,problem", [
    (b"[defaults]\nstrategy = 'auto'\n# caf\xe9\n", 3, None, "not UTF-8"),
    ("[defaults]\nstrategy = 'auto'\ncolour = 'red'\n", 3, "defaults.colour", "unknown key"),
    ("[defaults]\nstrategy = 'partial:0'\n", 2, "defaults.strategy", "must be >= 1"),
    (PIN + "num_classes = 0\n", 3, "weights.zoonet_s.mine.num_classes", "within 1 .. 1000000"),
    (PIN + "num_classes = -4\n", 3, "weights.zoonet_s.mine.num_classes", "within 1"),
    (PIN + "num_classes = 2000000\n", 3, "weights.zoonet_s.mine.num_classes", "max_num_classes"),
    (PIN + "label_names = 'cat'\n", 3, "weights.zoonet_s.mine.label_names", "list of strings"),
    (PIN + "label_names = 5\n", 3, "weights.zoonet_s.mine.label_names", "list of strings"),
    (PIN + "num_classes = 2\nlabel_names = ['a']\n", 4, "weights.zoonet_s.mine.label_names",
     "1 names but num_classes is 2"),
    (PIN + "license = 3\n", 3, "weights.zoonet_s.mine.license", "expected a string"),
    (PIN + "revision = 'main'\n", 3, "weights.zoonet_s.mine.revision", "only applies to hf-hub"),
    ('[weights.zoonet_s.mine]\nsource = "hf-hub:o/r"\nrevision = "../x"\n', 3,
     "weights.zoonet_s.mine.revision", "not a branch"),
    (PIN + "filename = '../../etc/passwd'\n", 3, "weights.zoonet_s.mine.filename", "no '..'"),
    (PIN + "filename = 'model.bin'\n", 3, "weights.zoonet_s.mine.filename", "safetensors only"),
    ("[limits]\nmax_num_classes = 0\n", 2, "limits.max_num_classes", "must be within"),
    ("[limits]\nmax_classes = 5\n", 2, "limits.max_classes", "unknown key"),
    ('[weights."zoonet_s".a]\nsource = "x"\n[weights."zoonet_s".b]\nsource = "y"\n'
     'filename = "x.pth"\n', 5, "weights.zoonet_s.b.filename", "safetensors only"),
])
def test_registry_toml_errors_name_file_line_key(tmp_path, monkeypatch, text, line, key,
                                                 problem):
    user = tmp_path / "user.toml"
    user.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    pattern = re.escape(f"{user}, line {line}: ") + (
        re.escape(f"key {key!r}: ") if key else "") + f".*{re.escape(problem)}"
    attempt(f"registry.toml: {problem}", load_catalog, error=ConfigError, match=pattern)


def test_registry_limit_is_settable(tmp_path, monkeypatch):
    user = tmp_path / "user.toml"
    user.write_text("[limits]\nmax_num_classes = 20\n")
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    with pytest.raises(InvalidArgumentError, match="above the limit of 20"):
        zoo_core.build_model("zoonet_s", 21, "finetune")
    assert zoo_core.build_model("zoonet_s", 20, "finetune").head.out_features == 20

