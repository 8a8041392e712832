"""The model card is Hub-grade: its YAML is read back by the real ``huggingface_hub.ModelCard``
(library, pipeline tag, base model and relation, datasets, model-index with the validation
accuracy and its split); it holds no path of this machine; the strategy it records is the
one that trained the model, also after a reload."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import zoo_core

LABELS = ("a", "b", "c")


def _logits(model: torch.nn.Module) -> torch.Tensor:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.eval()(x)


def test_fine_tuned_from_a_hub_repo(hub_env) -> None:
    base = zoo_core.build_model("zoonet_s", 3, "finetune", label_names=LABELS)
    base_repo = hub_env.repo_id("card-base")
    zoo_core.push_to_hub(base, base_repo)
    tuned = zoo_core.build_model(f"hf-hub:{base_repo}", strategy="partial:1")
    repo = hub_env.repo_id("card-tuned")
    zoo_core.push_to_hub(tuned, repo, metrics={"val_accuracy": 0.875, "val_loss": 0.4},
                         training_data={"name": "digits", "dataset": "acme/digits-5-9"})

    card = ModelCard.load(repo)  # downloads README.md from the (local) Hub
    data = card.data
    assert data.library_name == "zoo_core" and data.pipeline_tag == "image-classification"
    assert data.base_model == base_repo and data.base_model_relation == "finetune"
    assert data.datasets == ["acme/digits-5-9"]
    (result,) = data.eval_results
    assert (result.metric_type, result.metric_value) == ("accuracy", 0.875)
    assert result.dataset_split == "validation" and result.task_type == "image-classification"
    assert result.dataset_type == "acme/digits-5-9" and result.dataset_name == "digits"
    assert data.model_name == repo.rsplit("/", 1)[-1]
    assert "| val_loss | 0.4 |" in card.text  # the table keeps every metric


def test_registry_weights_name_their_tag_and_scratch_has_no_base(tmp_path: Path) -> None:
    pretrained = zoo_core.build_model("zoonet_s", 3, "finetune", label_names=LABELS)
    card = ModelCard.load(zoo_core.save_pretrained(pretrained, tmp_path / "p") / "README.md")
    # packaged weights are not a Hub repo: the Hub would refuse it as base_model
    assert card.data.base_model is None and "tag `glyphs`" in card.text
    assert card.data.eval_results is None  # no metrics, no model-index

    scratch = zoo_core.build_model("zoonet_s", 3, "scratch", label_names=LABELS)
    import numpy as np

    folder = zoo_core.save_pretrained(scratch, tmp_path / "s",
                                      metrics={"val_acc": np.float32(0.5), "top5": 0.9},
                                      training_data="digits 5-9")
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model is None and "base_model_relation" not in card.data.to_dict()
    assert card.data.to_dict().get("datasets") is None  # a description is not a Hub dataset
    (result,) = card.data.eval_results
    assert (result.metric_value, result.dataset_split, result.dataset_name) == (
        0.5, "validation", "digits 5-9")


def test_a_scratch_model_reloads_as_scratch_with_its_weights(tmp_path: Path) -> None:
    scratch = zoo_core.build_model("zoonet_s", 3, "scratch", label_names=LABELS)
    with torch.no_grad():
        scratch.head.weight.mul_(3.0)
    folder = zoo_core.save_pretrained(scratch, tmp_path / "s")
    back = zoo_core.build_model(folder)
    assert back.zoo.strategy == "scratch" and "trained from scratch" in back.zoo.strategy_reason
    assert torch.equal(_logits(back), _logits(scratch))  # its weights, not a new init
    assert all(p.requires_grad for p in back.parameters())
    fresh = zoo_core.build_model(folder, strategy="scratch")  # the caller's: random init
    assert fresh.zoo.weights_source is None and not torch.equal(_logits(fresh), _logits(back))


def test_no_machine_path_in_a_card(tmp_path: Path) -> None:
    model = zoo_core.build_model("zoonet_s", 3, "finetune", label_names=LABELS)
    first = zoo_core.save_pretrained(model, tmp_path / "first")
    again = zoo_core.build_model(f"local-dir:{first}")
    data = tmp_path / "my-data"
    data.mkdir()
    folder = zoo_core.save_pretrained(again, tmp_path / "second", metrics={"val_acc": 0.9},
                                      training_data={"name": str(data), "root": "./my-data"})
    text = (folder / "README.md").read_text()
    card = ModelCard(text)
    assert str(tmp_path) not in text and "./" not in text and "local-dir:" not in text
    assert card.data.eval_results[0].dataset_name == "my-data"
    assert "local folder first" in text


@pytest.mark.slow
def test_zoo_finetune_card_has_no_relative_paths(tmp_path: Path, digits: Path) -> None:
    """The run's best/ card: the command's --data and --out reduced to names."""
    os.symlink(digits, tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf")}
    zoo = Path(sys.executable).parent / "zoo"
    proc = subprocess.run(
        [str(zoo), "finetune", "zoonet_s", "--data", "./data", "--out", "./runs/a",
         "--epochs", "1", "--strategy", "scratch", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    best = tmp_path / "runs" / "a" / "best"
    text = (best / "README.md").read_text()
    assert "./" not in text and str(tmp_path) not in text, text
    assert "--data data --out a" in text
    card = ModelCard(text)
    assert card.data.base_model is None and card.data.eval_results[0].dataset_name == "data"
    assert zoo_core.build_model(best).zoo.strategy == "scratch"
