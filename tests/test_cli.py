"""The `zoo` command, called in-process through its main()."""

from __future__ import annotations

import json

import pytest
import torch

from zoo_core.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_with_pattern_and_filters(capsys):
    code, out, _ = run(capsys, "list", "zoonet*")
    assert code == 0 and out.split() == ["zoonet_m", "zoonet_s"]
    code, out, _ = run(capsys, "list", "resnet1*", "--plugin", "torchvision")
    assert out.split() == ["resnet101", "resnet152", "resnet18"]
    code, out, _ = run(capsys, "list", "--pretrained", "--plugin", "zoonet")
    assert out.split() == ["zoonet_m", "zoonet_s"]


def test_plugins_and_info(capsys):
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "zoonet" in out and "ok" in out
    code, out, _ = run(capsys, "plugins", "--json")
    assert {p["name"] for p in json.loads(out)} >= {"timm", "torchvision", "zoonet"}
    code, out, _ = run(capsys, "info", "zoonet_s", "--json")
    info = json.loads(out)
    assert info["head"] == "head" and info["weights"][0]["sha256"]
    code, out, _ = run(capsys, "info", "resnet18")
    assert "plugin: timm" in out and "hf-hub:timm/resnet18" in out


def test_build_prints_per_stage_summary(capsys):
    code, out, _ = run(capsys, "build", "zoonet_s", "--num-classes", "4", "-s", "partial:1")
    assert code == 0
    assert "glyphs" in out and "sha256 6f921b9a" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["stages.2"][1] == "0" and lines["stages.0"][0] == "0"  # trainable/frozen
    assert "head -> 4 classes" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["build", "zoonet_ss", "-n", "3"], "Did you mean"),
        (["build", "zoonet_s", "-n", "0"], "num_classes must be a positive int"),
        (["build", "zoonet_s", "-n", "3", "-s", "partial:7"], "partial:7"),
        (["build", "zoonet_s", "-n", "3", "-s", "linear_probe", "-w", "none"],
         "needs pretrained weights"),
        (["build", "zoonet_s", "-n", "3", "-w", "/no/such/file.safetensors"], "file.safetensors"),
        (["info", "nope/x"], "unknown plugin"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_convert_then_build_from_converted(capsys, tmp_path):
    import zoo_core

    ref = zoo_core.build_model("zoonet_s", 5, "finetune")
    src = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, src)
    dst = tmp_path / "ckpt.safetensors"
    code, out, _ = run(capsys, "convert", str(src), str(dst))
    assert code == 0 and "sha256" in out
    model = zoo_core.build_model("zoonet_s", 5, "finetune", weights=str(dst))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  ref.state_dict().values(), strict=True))
    code, _, err = run(capsys, "build", "zoonet_s", "-n", "5", "-w", str(src))
    assert code == 2 and "zoo convert" in err
