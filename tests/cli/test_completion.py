"""``zoo completion bash|zsh`` prints a script (shtab) that the shell accepts and that
completes zoo's subcommands and flags; building the parser stays free of shtab."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def _script(shell: str) -> str:
    done = subprocess.run([sys.executable, "-m", "zoo_core.cli", "completion", shell],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _complete(script: str, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end) with the script loaded."""
    words = line.split(" ")
    driver = (f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); "
              f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT={len(line)}; "
              '_shtab_zoo; printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_parses_and_completes_subcommands_and_flags(tmp_path):
    script = _script("bash")
    for command in ("finetune", "export", "eval", "predict", "rank", "completion"):
        assert command in script
    path = tmp_path / "zoo.bash"
    path.write_text(script, encoding="utf-8")
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert _complete(script, "zoo fin") == ["finetune"]
    assert "--print-config" in _complete(script, "zoo finetune --pri")
    assert _complete(script, "zoo export m --format exp") == ["exported-program"]


def test_zsh_script_names_the_subcommands(tmp_path):
    script = _script("zsh")
    assert script.startswith("#compdef zoo") and "finetune" in script and "export" in script
    if shutil.which("zsh"):
        path = tmp_path / "_zoo"
        path.write_text(script, encoding="utf-8")
        check = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_unknown_shell_is_refused(capsys):
    from zoo_core.cli.main import main

    with pytest.raises(SystemExit):
        main(["completion", "fish"])
    assert "invalid choice: 'fish'" in capsys.readouterr().err


def test_parser_imports_no_shtab_nor_torch():
    code = ("import sys; from zoo_core.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('shtab', 'torch', 'onnxruntime', 'yaml') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
