"""Weights from a Hugging Face Hub repo (`weights="hf-hub:..."` and registry pins), through
the real client against the local Hub-protocol server, then reloaded offline."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

import zoo_core
from zoo_core.registry._registry import reset_registry


def _upload_weights(hub_env, tmp_path, seed: int):
    """A 5-class zoonet_s state dict, perturbed by `seed`, pushed as model.safetensors."""
    ref = zoo_core.build_model("zoonet_s", 5, "finetune")
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(seed * 0.01)
    path = tmp_path / f"w{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    repo = hub_env.repo_id("zoonet-weights")
    hub_env.api.create_repo(repo)
    commit = hub_env.api.upload_file(path_or_fileobj=str(path), path_in_repo="model.safetensors",
                                     repo_id=repo)
    return ref, repo, commit, hashlib.sha256(path.read_bytes()).hexdigest()


def test_hub_weights_source_then_offline_reload(hub_env, tmp_path):
    ref, repo, commit, digest = _upload_weights(hub_env, tmp_path, seed=3)
    model = zoo_core.build_model("zoonet_s", 3, "linear_probe", weights=f"hf-hub:{repo}")
    assert model.zoo.weights_source == f"hf-hub:{repo}"
    assert model.zoo.weights_sha256 == digest
    head = "head."
    ref_state = ref.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith(head):
            assert torch.equal(value, ref_state[key]), key
    assert model.zoo.dropped_head_keys == ("head.bias", "head.weight")
    # pinned by commit sha, and offline with a fresh registry: served from the HF cache
    zoo_core.build_model("zoonet_s", 5, "finetune", weights=f"hf-hub:{repo}@{commit.oid}")
    hub_env.offline()
    hub_env.server.reset_counters()
    reset_registry()
    again = zoo_core.build_model("zoonet_s", 5, "finetune", weights=f"hf-hub:{repo}")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again.eval()(x), ref.eval()(x))
    assert sum(hub_env.server.request_counts.values()) == 0


def test_registry_pin_to_hub_repo_checks_sha256(hub_env, tmp_path, monkeypatch):
    _, repo, _, digest = _upload_weights(hub_env, tmp_path, seed=4)
    user = tmp_path / "user.toml"
    user.write_text(
        f'[weights.zoonet_s.mirror]\nsource = "hf-hub:{repo}"\nsha256 = "{digest}"\n'
        f'[weights.zoonet_s.bad]\nsource = "hf-hub:{repo}"\nsha256 = "{"0" * 64}"\n'
    )
    monkeypatch.setenv("ZOO_CORE_REGISTRY", str(user))
    reset_registry()
    model = zoo_core.build_model("zoonet_s", 5, "finetune", weights="mirror")
    assert model.zoo.weights_tag == "mirror" and model.zoo.weights_sha256 == digest
    with pytest.raises(zoo_core.WeightsError, match=f"expected {'0' * 64}, got {digest}"):
        zoo_core.build_model("zoonet_s", 5, "finetune", weights="bad")
