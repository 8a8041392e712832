"""``zoo completion bash|zsh``: print a shell completion script for ``zoo`` (generated
by shtab from the very parser ``zoo`` runs, so it knows every subcommand and flag)."""

from __future__ import annotations

import argparse
from typing import Any

from zoo_core.errors import ZooError

SHELLS = ("bash", "zsh")


def add_cli(subparsers: Any, root: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``zoo completion`` to ``root``'s subparsers."""
    p = subparsers.add_parser(
        "completion", help="print a bash or zsh completion script",
        description="Print a completion script for SHELL. bash: add `eval \"$(zoo "
                    "completion bash)\"` to ~/.bashrc. zsh: `zoo completion zsh > "
                    "\"${fpath[1]}/_zoo\"` then restart the shell (or compinit).")
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh")
    p.set_defaults(func=lambda args: _cmd_completion(root, args.shell))
    return p


def _cmd_completion(root: argparse.ArgumentParser, shell: str) -> int:
    try:
        import shtab
    except ImportError as exc:
        raise ZooError("zoo completion needs shtab: pip install shtab") from exc
    print(shtab.complete(root, shell=shell), end="")
    return 0
