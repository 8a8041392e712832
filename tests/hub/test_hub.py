"""Hub round trip: save_pretrained, push_to_hub, build_model("hf-hub:..."), timm interop.

Real huggingface_hub client over real HTTP against the local Hub of tests/hubserver.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

import zoo_core
from zoo_core import HubError, InvalidArgumentError
from zoo_core.hub._hub import add_cli, push_to_hub, save_pretrained

LABELS = ("cat", "dog", "bird")
X32 = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
X64 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def trained_zoonet(seed: int = 0, strategy: str = "finetune") -> torch.nn.Module:
    """zoonet_s with a new 3-class head, BN statistics moved and weights changed by `seed`."""
    model = zoo_core.build_model("zoonet_s", 3, strategy, label_names=LABELS)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=g))
        model.stem[0].weight.mul_(1.0 + 0.1 * seed)
        model.train()
        model(torch.randn(8, 3, 32, 32, generator=g))  # updates BN running stats (finetune)
    return model.eval()


def logits(model: torch.nn.Module, x: torch.Tensor = X32) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def card_meta(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- round trip


# huggingface_hub 2.4's LFS PUT passes raw bytes as `data=`, which httpx2 deprecates.
HTTPX_LFS_WARNING = "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"


@pytest.mark.parametrize("mode", [
    "regular", pytest.param("lfs", marks=pytest.mark.filterwarnings(HTTPX_LFS_WARNING))])
def test_push_load_round_trip_and_second_push(hub_env, mode):
    server = hub_env.server
    hub_env.set_upload_mode(mode)
    repo = hub_env.repo_id("zoonet")
    model = trained_zoonet()
    ref = logits(model)

    commit = push_to_hub(model, repo, metrics={"accuracy": 0.5}, training_data="synthetic")
    assert "/commit/" in commit and commit.oid == server.head(repo)
    files = server.files(repo)
    assert set(files) == {".gitattributes", "model.safetensors", "config.json", "README.md"}
    weights_sha = sha256(files["model.safetensors"])
    uploaded = {sha for r, sha, _ in server.lfs_uploads if r == repo}
    assert (weights_sha in uploaded) == (mode == "lfs")
    config = json.loads(files["config.json"])
    assert config["zoo_core"]["weights_sha256"] == weights_sha
    assert config["label_names"] == list(LABELS) and config["num_classes"] == 3

    # fresh cache (nothing downloaded yet in this HF_HOME) -> identical model
    loaded = zoo_core.build_model(f"hf-hub:{repo}")
    assert torch.equal(logits(loaded), ref)
    info = loaded.zoo
    assert (info.plugin, info.name, info.head, info.num_classes) == ("zoonet", "zoonet_s",
                                                                     "head", 3)
    assert info.label_names == LABELS and info.dropped_head_keys == ()
    assert info.strategy == "finetune" and "kept" in info.strategy_reason
    assert info.base_model == f"hf-hub:{repo}" and info.weights_sha256 == weights_sha
    assert info.extra["hub"]["commit"] == commit.oid
    assert info.data_config.input_size == (3, 32, 32)

    # re-pushing the loaded model names the first repo as its base model, honestly
    repo_b = hub_env.repo_id("derived")
    push_to_hub(loaded, repo_b)
    meta = card_meta(server.files(repo_b)["README.md"].decode())
    assert meta["base_model"] == repo and meta["library_name"] == "zoo_core"
    base = json.loads(server.files(repo_b)["config.json"])["zoo_core"]["base_weights"]
    assert base == {"tag": "hub", "source": f"hf-hub:{repo}@{commit.oid}",
                    "sha256": weights_sha}

    # another num_classes: the pushed head is dropped, linear_probe by default
    seven = zoo_core.build_model(f"hf-hub:{repo}", num_classes=7)
    assert set(seven.zoo.dropped_head_keys) == {"head.weight", "head.bias"}
    assert seven.zoo.strategy == "linear_probe" and seven.head.out_features == 7
    assert seven.zoo.label_names is None
    assert torch.equal(seven.stem[0].weight, model.stem[0].weight)
    assert {n.split(".")[0] for n in seven.zoo.trainable} == {"head"}

    # second push: a new commit, unchanged weights and config are not uploaded again,
    # and the card is written afresh (no stale metrics or training data)
    before = len(server.commits(repo))
    lfs_before = len(server.lfs_uploads)
    second = push_to_hub(model, repo, metrics={"top1": 0.75})
    history = server.commits(repo)
    assert len(history) == before + 1 and history[-1].oid == second.oid
    assert history[-1].sent == ("README.md",)
    assert "model.safetensors" not in history[-1].added
    assert all(sha != weights_sha for _, sha, _ in server.lfs_uploads[lfs_before:])
    card = server.files(repo)["README.md"].decode()
    assert "top1" in card and "accuracy" not in card and "synthetic" not in card


def test_revision_tag_sha_pinning_and_offline_cache(hub_env):
    server, api = hub_env.server, hub_env.api
    repo = hub_env.repo_id("pins")
    m1, m2, m3 = trained_zoonet(1), trained_zoonet(2), trained_zoonet(3)
    c1 = push_to_hub(m1, repo)
    api.create_tag(repo, tag="v1")
    c2 = push_to_hub(m2, repo)
    c3 = push_to_hub(m3, repo, revision="dev")  # branch created from main
    assert server.head(repo, "dev") == c3.oid and server.head(repo) == c2.oid
    assert server.commits(repo, "dev")[-2].oid == c2.oid

    expected = {"": m2, "@v1": m1, f"@{c1.oid}": m1, "@dev": m3, f"@{c2.oid}": m2}
    for suffix, model in expected.items():
        loaded = zoo_core.build_model(f"hf-hub:{repo}{suffix}")
        assert torch.equal(logits(loaded), logits(model)), suffix
        assert loaded.zoo.base_model == f"hf-hub:{repo}{suffix}"
    assert zoo_core.build_model(f"hf-hub:{repo}@v1").zoo.extra["hub"]["commit"] == c1.oid

    # offline: everything above comes from the cache, without a single request
    hub_env.offline()
    server.reset_counters()
    for suffix, model in expected.items():
        assert torch.equal(logits(zoo_core.build_model(f"hf-hub:{repo}{suffix}")),
                           logits(model))
    assert sum(server.request_counts.values()) == 0
    with pytest.raises(HubError, match="not in the local Hugging Face cache"):
        zoo_core.build_model(f"hf-hub:{repo}@{c3.oid[:7]}")


def test_offline_reload_with_server_stopped(hub_env):
    from hubserver import HubServer

    own = HubServer().start()
    try:
        hub_env.use_server(own)
        repo = hub_env.repo_id("gone")
        model = trained_zoonet(5, strategy="linear_probe")
        push_to_hub(model, repo)
        first = zoo_core.build_model(f"hf-hub:{repo}")
        assert first.zoo.strategy == "linear_probe"
    finally:
        own.stop()
    hub_env.offline()
    again = zoo_core.build_model(f"hf-hub:{repo}")
    assert torch.equal(logits(again), logits(model))
    assert again.zoo.label_names == LABELS


# ------------------------------------------------------------------------ timm interop


def test_timm_interop_both_ways(hub_env):
    import timm
    from timm.models import push_to_hf_hub

    # ours -> plain timm (a scratch model: the card must not claim pretraining)
    ours = zoo_core.build_model("timm/test_resnet", 4, "scratch", label_names="abcd")
    repo = hub_env.repo_id("ours-timm")
    push_to_hub(ours, repo)
    plain = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()
    assert torch.equal(logits(plain, X64), logits(ours, X64))
    assert plain.pretrained_cfg["label_names"] == list("abcd")
    card = hub_env.server.files(repo)["README.md"].decode()
    meta = card_meta(card)
    assert meta["library_name"] == "timm" and "base_model" not in meta
    assert "trained from scratch, no pretrained weights" in card
    assert "fine-tuned" not in card and "Base weights: tag" not in card
    back = zoo_core.build_model(f"hf-hub:{repo}")
    assert back.zoo.strategy == "scratch" and "from scratch" in back.zoo.strategy_reason
    assert torch.equal(logits(back, X64), logits(ours, X64))

    # timm's own push_to_hf_hub (no zoo_core key) -> ours
    native = timm.create_model("test_resnet", pretrained=False, num_classes=3).eval()
    repo2 = hub_env.repo_id("native-timm")
    push_to_hf_hub(native, repo2, safe_serialization=True,
                   model_config={"label_names": ["x", "y", "z"]})
    assert "zoo_core" not in json.loads(hub_env.server.files(repo2)["config.json"])
    loaded = zoo_core.build_model(f"hf-hub:{repo2}")
    assert torch.equal(logits(loaded, X64), logits(native, X64))
    assert (loaded.zoo.plugin, loaded.zoo.name, loaded.zoo.head) == ("timm", "test_resnet", "fc")
    assert loaded.zoo.label_names == ("x", "y", "z") and loaded.zoo.strategy == "finetune"
    assert loaded.zoo.data_config.mean == tuple(native.pretrained_cfg["mean"])


# ------------------------------------------------------------------- refused repositories


def _raw_repo(hub_env, name: str, files: dict[str, bytes]) -> str:
    from huggingface_hub import CommitOperationAdd

    repo = hub_env.repo_id(name)
    api = hub_env.api
    api.create_repo(repo)
    api.create_commit(repo, [CommitOperationAdd(p, data) for p, data in files.items()],
                      commit_message="raw")
    return repo


def _weights_bytes(model: torch.nn.Module, tmp_path: Path) -> bytes:
    return (save_pretrained(model, tmp_path / "w") / "model.safetensors").read_bytes()


def test_config_is_data_not_code(hub_env, tmp_path):
    weights = _weights_bytes(trained_zoonet(), tmp_path)
    saved = json.loads((tmp_path / "w" / "config.json").read_text())

    unknown = json.loads(json.dumps(saved))
    unknown["zoo_core"].update(plugin="vision_extra", distribution="zoo-vision-extra",
                               distribution_version="2.1", model="supernet")
    repo = _raw_repo(hub_env, "unknown-plugin", {
        "config.json": json.dumps(unknown).encode(), "model.safetensors": weights})
    # The distribution name comes from the repo: never offered as a command (typosquatting)...
    with pytest.raises(HubError, match=r"'vision_extra'.*'zoo-vision-extra'.*not verified") as err:
        zoo_core.build_model(f"hf-hub:{repo}")
    assert "pip install" not in str(err.value)
    # ...unless the project's registry.toml knows it.
    user = tmp_path / "known.toml"
    user.write_text('[plugins]\nknown_distributions = ["zoo-vision-extra"]\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CORE_REGISTRY", str(user))
        from zoo_core.registry._registry import reset_registry

        reset_registry()
        with pytest.raises(HubError, match=r"'vision_extra'.*pip install zoo-vision-extra>=2\.1"):
            zoo_core.build_model(f"hf-hub:{repo}")
    reset_registry()

    evil = json.loads(json.dumps(saved))
    evil["zoo_core"]["plugin"] = "os; rm -rf /"
    repo = _raw_repo(hub_env, "evil", {"config.json": json.dumps(evil).encode(),
                                       "model.safetensors": weights})
    with pytest.raises(HubError, match="zoo_core.plugin is missing or not a valid name"):
        zoo_core.build_model(f"hf-hub:{repo}")

    repo = _raw_repo(hub_env, "no-arch", {"config.json": b'{"num_classes": 3}',
                                          "model.safetensors": weights})
    with pytest.raises(HubError, match="neither a 'zoo_core' key"):
        zoo_core.build_model(f"hf-hub:{repo}")

    repo = _raw_repo(hub_env, "pickle-only", {
        "config.json": json.dumps(saved).encode(), "pytorch_model.bin": b"PK\x03\x04junk"})
    with pytest.raises(HubError, match=r"no model\.safetensors.*pytorch_model\.bin.*never "
                                       r"unpickles"):
        zoo_core.build_model(f"hf-hub:{repo}")

    other = _weights_bytes(trained_zoonet(9), tmp_path)  # config pins another file
    repo = _raw_repo(hub_env, "mismatch", {"config.json": json.dumps(saved).encode(),
                                           "model.safetensors": other})
    with pytest.raises(HubError, match="do not belong together"):
        zoo_core.build_model(f"hf-hub:{repo}")

    liar = json.loads(json.dumps(saved))  # says 4 classes, the weights have a 3-class head
    liar["num_classes"] = liar["pretrained_cfg"]["num_classes"] = 4
    del liar["label_names"], liar["zoo_core"]["weights_sha256"]
    repo = _raw_repo(hub_env, "liar", {"config.json": json.dumps(liar).encode(),
                                       "model.safetensors": weights})
    with pytest.raises(HubError, match="says 4 classes"):
        zoo_core.build_model(f"hf-hub:{repo}")

    with pytest.raises(HubError, match="not found"):
        zoo_core.build_model(f"hf-hub:{hub_env.repo_id('missing')}")


@pytest.mark.parametrize("name", [
    "hf-hub:../etc/passwd", "hf-hub:org/../../etc", "hf-hub:/abs/path", "hf-hub:org/name/x",
    "hf-hub:org/..", "hf-hub:org/name@../../main", "hf-hub:org/name@/abs", "hf-hub:org/name@",
    "hf-hub:org\\name", "hf-hub:org/na me", "hf-hub:org/name@a b",
])
def test_path_traversal_rejected_before_any_request(hub_env, name):
    with pytest.raises(InvalidArgumentError):
        zoo_core.build_model(name)
    assert sum(hub_env.server.request_counts.values()) == 0


def test_push_validates_repo_and_revision(hub_env):
    model = trained_zoonet()
    for repo, rev in (("../evil", None), ("org/../x", None), ("org/ok", "../main"),
                      ("/abs/x", None), ("org/ok", "a/../b")):
        with pytest.raises(InvalidArgumentError):
            push_to_hub(model, repo, revision=rev)
    assert sum(hub_env.server.request_counts.values()) == 0


def test_failed_commit_leaves_remote_unchanged(hub_env):
    server = hub_env.server
    hub_env.fast_retries()
    repo = hub_env.repo_id("fails")
    push_to_hub(trained_zoonet(1), repo)
    head, files = server.head(repo), server.files(repo)
    server.fail_next_commit = 20
    with pytest.raises(HubError, match="left unchanged") as err:
        push_to_hub(trained_zoonet(2), repo)
    assert err.value.__cause__ is not None
    assert server.head(repo) == head and server.files(repo) == files
    server.clear_failures()
    push_to_hub(trained_zoonet(2), repo)
    assert server.head(repo) != head


# ----------------------------------------------------------------------- save_pretrained


def test_save_pretrained_atomic_fresh_card_and_no_temp_dirs(tmp_path, monkeypatch):
    from zoo_core.hub import _save

    model = trained_zoonet()
    out = tmp_path / "out"
    save_pretrained(model, out, metrics={"accuracy": 0.1}, training_data={"name": "toys"})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    first = (out / "README.md").read_text()
    meta = card_meta(first)
    assert meta["library_name"] == "zoo_core" and meta["license"] == "apache-2.0"  # glyphs weights
    assert "accuracy" in first and "toys" in first and "pretrained" not in meta.get("tags", [])
    config_text = (out / "config.json").read_text()
    assert config_text == json.dumps(json.loads(config_text), indent=2, sort_keys=True) + "\n"

    (out / "notes.txt").write_text("mine")
    save_pretrained(model, out, metrics={"f1": 0.2})
    card = (out / "README.md").read_text()
    assert "f1" in card and "accuracy" not in card and "toys" not in card
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_save, "model_card", broken)
    with pytest.raises(HubError, match="disk full"):
        save_pretrained(model, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "README.md").read_text() == card

    with pytest.raises(HubError, match="build_model"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "plain")


def test_cli_push(hub_env, tmp_path):
    parser = argparse.ArgumentParser(prog="zoo")
    add_cli(parser.add_subparsers(dest="command"))
    folder = save_pretrained(trained_zoonet(), tmp_path / "dir")
    (folder / "pytorch_model.bin").write_bytes(b"not pushed")
    repo = hub_env.repo_id("cli")
    args = parser.parse_args(["push", str(folder), repo, "--revision", "exp", "-m", "hello"])
    assert args.func(args) == 0
    commit = hub_env.server.commits(repo, "exp")[-1]
    assert commit.title == "hello"
    assert set(hub_env.server.files(repo, "exp")) == {
        ".gitattributes", "model.safetensors", "config.json", "README.md"}

    (folder / "config.json").write_text('{"num_classes": 3}')
    args = parser.parse_args(["push", str(folder), repo])
    with pytest.raises(HubError, match="neither a 'zoo_core' key"):
        args.func(args)
    (folder / "config.json").unlink()
    with pytest.raises(HubError, match="no config.json"):
        args.func(args)
