"""The local Hub (tests/hubserver.py) against the real huggingface_hub client over real HTTP."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hub_fixtures import HubEnv
from hubserver import LFS_PUT_WARNING, HubServer
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    constants,
    file_exists,
    hf_hub_download,
    list_repo_files,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.torch import load_file, save_file

MODEL_FILES = ["README.md", "config.json", "model.safetensors"]
README = "---\nlicense: apache-2.0\nlibrary_name: zoo_core\n---\n# A tiny test model\n"


def write_model(folder: Path, *, num_classes: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {"head.weight": torch.randn(num_classes, 4, generator=generator),
               "head.bias": torch.zeros(num_classes)}
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"num_classes": num_classes}))
    (folder / "README.md").write_text(README)
    return tensors


def push(hub_env: HubEnv, folder: Path, repo_id: str | None = None, **kwargs):
    repo_id = repo_id or hub_env.repo_id()
    hub_env.api.create_repo(repo_id, exist_ok=True)
    return repo_id, hub_env.api.upload_folder(repo_id=repo_id, folder_path=folder, **kwargs)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_create_repo_and_exist_ok(hub_env: HubEnv) -> None:
    api, repo_id = hub_env.api, hub_env.repo_id()
    url = api.create_repo(repo_id, private=True)
    assert url.repo_id == repo_id and url.startswith(hub_env.endpoint)

    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(repo_id)
    assert error.value.response.status_code == 409
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id

    assert api.repo_exists(repo_id) and not api.repo_exists(f"{repo_id}-nope")
    assert model_info(repo_id).private is True  # module-level function: the import-time HfApi
    assert hub_env.server.request_counts["POST create_repo"] == 3


def test_push_pull_roundtrip_skips_unchanged_files(hub_env: HubEnv, tmp_path: Path) -> None:
    server, folder = hub_env.server, tmp_path / "model"
    tensors = write_model(folder)
    repo_id, first = push(hub_env, folder, commit_message="v1")

    assert server.head(repo_id) == first.oid
    assert sorted(server.commits(repo_id)[-1].sent) == MODEL_FILES
    info = model_info(repo_id, files_metadata=True)
    assert info.sha == first.oid
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["model.safetensors"] == (folder / "model.safetensors").stat().st_size
    assert list_repo_files(repo_id) == [".gitattributes", *MODEL_FILES]
    assert file_exists(repo_id, "config.json") and not file_exists(repo_id, "missing.bin")

    weights = Path(hf_hub_download(repo_id, "model.safetensors"))
    assert weights.parent.name == first.oid
    # The cache names blobs after the ETag: the git blob sha1 for regular files.
    assert weights.resolve().name == git_blob_sha1(weights.read_bytes())
    loaded = load_file(weights)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    snapshot = Path(snapshot_download(repo_id))
    assert sorted(p.name for p in snapshot.iterdir()) == sorted([".gitattributes", *MODEL_FILES])

    # Second push, weights unchanged: the client must not send them again.
    new_config = json.dumps({"num_classes": 3, "epochs": 2})
    (folder / "config.json").write_text(new_config)
    _, second = push(hub_env, folder, repo_id, commit_message="v2")
    commit = server.commits(repo_id)[-1]
    assert commit.oid == second.oid and commit.title == "v2"
    assert commit.sent == commit.added == ("config.json",)
    assert commit.bytes_sent == len(new_config)
    assert Path(hf_hub_download(repo_id, "config.json")).read_text() == new_config

    # Third push, nothing changed: no commit request at all.
    commits_before = server.request_counts["POST commit"]
    third = push(hub_env, folder, repo_id)[1]
    assert third.oid == second.oid and server.request_counts["POST commit"] == commits_before
    assert [c.title for c in server.commits(repo_id)] == ["initial commit", "v1", "v2"]


def test_branches_tags_and_revision_pinning(hub_env: HubEnv, tmp_path: Path) -> None:
    api, server, folder = hub_env.api, hub_env.server, tmp_path / "model"
    write_model(folder)
    repo_id, v1 = push(hub_env, folder)
    api.create_tag(repo_id, tag="v1.0")
    api.create_branch(repo_id, branch="dev")

    write_model(folder, num_classes=5, seed=1)
    (folder / "extra").mkdir()
    (folder / "extra" / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    dev = api.upload_folder(repo_id=repo_id, folder_path=folder, revision="dev")
    assert server.head(repo_id) == v1.oid  # main did not move
    assert server.head(repo_id, "dev") == dev.oid != v1.oid

    def num_classes(revision: str) -> int:
        config = Path(hf_hub_download(repo_id, "config.json", revision=revision))
        return json.loads(config.read_text())["num_classes"]

    assert [num_classes(r) for r in ("main", "v1.0", v1.oid, "dev", dev.oid)] == [3, 3, 3, 5, 5]
    assert model_info(repo_id, revision="dev").sha == dev.oid
    assert model_info(repo_id, revision="v1.0").sha == v1.oid
    assert "extra/labels.txt" in list_repo_files(repo_id, revision="dev")
    assert "extra/labels.txt" not in list_repo_files(repo_id)
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id, revision="dev")}
    assert top["extra"] == "RepoFolder" and "extra/labels.txt" not in top
    assert Path(snapshot_download(repo_id, revision="v1.0")).name == v1.oid
    assert (Path(snapshot_download(repo_id, revision=dev.oid)) / "extra" / "labels.txt").is_file()

    refs = api.list_repo_refs(repo_id)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": v1.oid, "dev": dev.oid}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": v1.oid}
    history = [c.commit_id for c in api.list_repo_commits(repo_id, revision="dev")]
    assert history[:2] == [dev.oid, v1.oid]
    with pytest.raises(HfHubHTTPError) as error:
        api.create_branch(repo_id, branch="dev")
    assert error.value.response.status_code == 409
    api.create_branch(repo_id, branch="dev", exist_ok=True)


def test_offline_mode_reloads_from_cache(hub_env: HubEnv, tmp_path: Path) -> None:
    write_model(tmp_path / "model")
    repo_id, _ = push(hub_env, tmp_path / "model")
    # Offline lookups of "main" need refs/main, written only by a download by branch name.
    config = hf_hub_download(repo_id, "config.json")
    snapshot = snapshot_download(repo_id)

    hub_env.offline()
    assert constants.is_offline_mode()
    requests_before = hub_env.server.request_counts.total()
    assert hf_hub_download(repo_id, "config.json") == config
    assert snapshot_download(repo_id) == snapshot
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(repo_id, "never-downloaded.txt")
    assert hub_env.server.request_counts.total() == requests_before


def test_reload_from_cache_with_server_stopped(hub_env: HubEnv, tmp_path: Path) -> None:
    write_model(tmp_path / "model")
    with HubServer() as private_server:
        hub_env.use_server(private_server)
        repo_id, commit = push(hub_env, tmp_path / "model")
        weights = hf_hub_download(repo_id, "model.safetensors")
        snapshot = snapshot_download(repo_id)

    hub_env.fast_retries()  # a miss retries the unreachable server before giving up
    assert hf_hub_download(repo_id, "model.safetensors") == weights
    assert snapshot_download(repo_id) == snapshot
    assert Path(hf_hub_download(repo_id, "model.safetensors", revision=commit.oid)) == Path(weights)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(repo_id, "never-downloaded.txt")


def test_missing_repo_revision_and_file_raise_the_right_errors(hub_env: HubEnv) -> None:
    repo_id, missing_repo = hub_env.repo_id(), hub_env.repo_id("never-created")
    hub_env.api.create_repo(repo_id)

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(missing_repo, "config.json")
    with pytest.raises(RepositoryNotFoundError):
        model_info(missing_repo)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(repo_id, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "config.json")
    assert not file_exists(missing_repo, "config.json")
    assert not file_exists(repo_id, ".gitattributes", revision="no-such-branch")
    assert not file_exists(repo_id, "config.json")
    assert file_exists(repo_id, ".gitattributes")


@pytest.mark.filterwarnings(LFS_PUT_WARNING)  # the client's own LFS PUT, see hubserver.py
@pytest.mark.parametrize("mode", ["lfs", "auto"])
def test_lfs_upload_mode(hub_env: HubEnv, tmp_path: Path, mode: str) -> None:
    hub_env.set_upload_mode(mode)
    assert constants.HF_HUB_DISABLE_XET  # Xet would be chosen for LFS files otherwise
    server, folder = hub_env.server, tmp_path / "model"
    write_model(folder)
    weights = (folder / "model.safetensors").read_bytes()
    sha256 = hashlib.sha256(weights).hexdigest()
    repo_id, _ = push(hub_env, folder)

    tree = {f.path: f for f in hub_env.api.list_repo_tree(repo_id, recursive=True)}
    assert tree["model.safetensors"].lfs.sha256 == sha256
    assert (tree["config.json"].lfs is None) == (mode == "auto")  # "auto": text stays regular
    assert (repo_id, sha256, len(weights)) in server.lfs_uploads
    cached = Path(hf_hub_download(repo_id, "model.safetensors"))
    assert cached.read_bytes() == weights and cached.resolve().name == sha256  # ETag = sha256

    (folder / "config.json").write_text(json.dumps({"num_classes": 3, "epochs": 2}))
    push(hub_env, folder, repo_id)
    assert server.commits(repo_id)[-1].sent == ("config.json",)
    assert [oid for _, oid, _ in server.lfs_uploads].count(sha256) == 1
    # "lfs": 3 files, then the changed config.json again; "auto": only the weights, once.
    assert server.request_counts["PUT lfs_upload"] == (4 if mode == "lfs" else 1)


def test_failed_commit_leaves_the_repo_unchanged(hub_env: HubEnv, tmp_path: Path) -> None:
    server, folder = hub_env.server, tmp_path / "model"
    write_model(folder)
    repo_id, _ = push(hub_env, folder)
    files_before, history_before = server.files(repo_id), server.commits(repo_id)

    server.fail_next_commit = True
    with pytest.raises(HfHubHTTPError) as error:
        hub_env.api.create_commit(repo_id, commit_message="broken", operations=[
            CommitOperationAdd("config.json", b'{"num_classes": 7}'),
            CommitOperationDelete("README.md"),
        ])
    assert error.value.response.status_code == 500
    assert server.request_counts["POST commit"] == 2  # the request did reach the server
    assert server.files(repo_id) == files_before and server.commits(repo_id) == history_before

    # upload_folder (hf_xet installed) retries failed commits 5 times: make all of them fail.
    hub_env.fast_retries()
    write_model(folder, seed=1)
    server.fail_next("POST commit", times=6)
    with pytest.raises(HfHubHTTPError):
        hub_env.api.upload_folder(repo_id=repo_id, folder_path=folder)
    assert server.files(repo_id) == files_before and server.commits(repo_id) == history_before

    # A single transient failure is retried transparently and lands exactly one commit.
    server.fail_next_commit = True
    commit = hub_env.api.upload_folder(repo_id=repo_id, folder_path=folder)
    assert server.fail_next_commit == 0
    assert server.commits(repo_id)[:-1] == history_before and server.head(repo_id) == commit.oid


def test_timm_push_to_hub_and_load_pretrained(hub_env: HubEnv) -> None:
    import timm
    from timm.models import push_to_hf_hub

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3).eval()
    repo_id = hub_env.repo_id("timm-test-resnet")
    push_to_hf_hub(model, repo_id)
    assert {"config.json", "model.safetensors", "README.md"} <= set(list_repo_files(repo_id))

    loaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    x = torch.randn(2, *model.pretrained_cfg["input_size"])
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
