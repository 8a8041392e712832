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
    assert "glyphs" in out and "sha256 be3c802e" in out
    # group rows end with trainable, frozen; the stem counts with stages.0
    lines = {line.split()[0]: line.split()[-2:] for line in out.splitlines() if line.strip()}
    assert lines["stages.2"][1] == "0" and lines["stages.0"][0] == "0"
    assert "stages.0 (with the stem)" in out
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


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and "zoo-core" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 16)" in out and "(default: None)" not in out


def test_json_on_list_info_plugins_build(capsys):
    code, out, _ = run(capsys, "list", "zoonet*", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["zoonet_m", "zoonet_s"]
    code, out, _ = run(capsys, "info", "zoonet_s", "--json")
    params = json.loads(out)["parameters"]
    assert params["partial"]["partial:1"] < params["total_params"]
    code, out, _ = run(capsys, "plugins", "--json")
    timm_row = next(p for p in json.loads(out) if p["name"] == "timm")
    assert timm_row["provides"][0].startswith("timm ")
    code, out, _ = run(capsys, "build", "zoonet_s", "-n", "3", "-s", "linear_probe", "--json")
    built = json.loads(out)
    assert built["strategy"] == "linear_probe"
    assert built["trainable_params"] == built["parameters"]["head"]["params"]


def test_plugins_table_names_the_library_providing_the_models(capsys):
    import importlib.metadata

    code, out, _ = run(capsys, "plugins")
    assert f"timm {importlib.metadata.version('timm')}" in out
    assert f"torchvision {importlib.metadata.version('torchvision')}" in out


def test_list_tags_shows_arch_tag_names(capsys):
    code, out, _ = run(capsys, "list", "zoonet_s*", "--tags")
    assert out.split() == ["zoonet_s.digits04", "zoonet_s.glyphs"]
    code, out, _ = run(capsys, "list", "resnet18.*", "--tags", "--plugin", "timm")
    assert "resnet18.a1_in1k" in out.split()


def test_info_and_build_show_what_partial_k_trains(capsys):
    code, out, _ = run(capsys, "info", "torchvision/densenet121")
    assert code == 0 and "features.denseblock1 (+ stem)" in out
    assert "partial:1 3,711,464 (46.5%)" in " ".join(out.split())  # not only norm5
    code, out, _ = run(capsys, "build", "zoonet_s", "-n", "3", "-s", "linear_probe")
    assert "what partial:K would train" in out


def test_strategy_typo_gets_a_suggestion(capsys):
    code, _, err = run(capsys, "build", "zoonet_s", "-n", "3", "-s", "linear_prob")
    assert code == 2 and "Did you mean 'linear_probe'?" in err


def test_cli_messages_use_flags_not_python_arguments(capsys):
    code, _, err = run(capsys, "finetune", "--resume")
    assert code == 2 and "--resume" in err and "resume=True" not in err


def test_hash_prints_the_sha256_to_pin(capsys, tmp_path):
    import hashlib

    f = tmp_path / "w.safetensors"
    f.write_bytes(b"weights")
    code, out, _ = run(capsys, "hash", str(f))
    assert code == 0 and out.strip() == hashlib.sha256(b"weights").hexdigest()
    code, _, err = run(capsys, "hash", str(tmp_path / "missing"))
    assert code == 2 and "missing" in err


def test_saved_weights_follow_the_umask(tmp_path):
    import os
    import stat

    import zoo_core

    old = os.umask(0o027)
    try:
        zoo_core.save_pretrained(zoo_core.build_model("zoonet_s", 3, "linear_probe"),
                                 tmp_path / "saved")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "saved").iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o640


def test_converted_weights_follow_the_umask(capsys, tmp_path):
    import os
    import stat

    torch.save({"w": torch.zeros(2)}, tmp_path / "a.pth")
    old = os.umask(0o022)
    try:
        assert main(["convert", str(tmp_path / "a.pth"), str(tmp_path / "a.safetensors")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == 0o644


def test_broken_pipe_prints_no_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for cmd in ("list", "info zoonet_s --json"):
        proc = subprocess.run(
            f"{sys.executable} -m zoo_core.cli {cmd} | head -1", shell=True, env=env,
            capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() and "Traceback" not in proc.stderr
        assert "BrokenPipeError" not in proc.stderr


def test_push_resolves_a_run_folder_to_best_and_fills_the_card(capsys, tmp_path, monkeypatch):
    import zoo_core
    from zoo_core.hub import _hub

    run_dir = tmp_path / "run"
    zoo_core.save_pretrained(zoo_core.build_model("zoonet_s", 3, "linear_probe"),
                             run_dir / "best")
    assert "hf-hub:ORG/NAME" in (run_dir / "best" / "README.md").read_text()
    pushed = {}

    def fake_push(folder, repo_id, **kwargs):
        pushed["card"] = (folder / "README.md").read_text()
        pushed["weights"] = (folder / "model.safetensors").is_file()
        return f"https://hub/{repo_id}"

    monkeypatch.setattr(_hub, "push_directory", fake_push)
    code, out, _ = run(capsys, "push", str(run_dir), "me/digits")
    assert code == 0 and "best" in out and pushed["weights"]
    assert "hf-hub:me/digits" in pushed["card"] and "ORG/NAME" not in pushed["card"]


@pytest.mark.slow
def test_refusal_names_every_probe_and_p_value(capsys, tmp_path):
    from zoo_core.data._embedded import embedded_task

    root = embedded_task("random-labels", 40, cache=tmp_path / "c", val_per_class=4)
    code = main(["finetune", "--data", str(root), "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "run"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("zoo: error: transfer learning not recommended")
    for text in ("label-permutation baseline", "pretrained ", "random-init ", "raw pixels ",
                 "(p=", "Bonferroni", "--force"):
        assert text in err, text
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (("--race", "1.5"), "--race / race must be a share of the epochs between 0 (off) and 1"),
    (("--race", "-0.1"), "--race / race must be a share of the epochs between 0 (off) and 1"),
    (("--race", "0.5", "--strategy", "finetune"), "with --strategy finetune there is nothing"),
])
def test_race_flag_is_checked_before_anything_runs(capsys, tmp_path, argv, says):
    code, _, err = run(capsys, "finetune", "--epochs", "1", "--no-progress",
                       "--out", str(tmp_path / "run"), *argv)
    assert code != 0 and err.startswith("zoo: error: ") and says in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
