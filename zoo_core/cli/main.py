"""The ``zoo`` command: list, info, plugins, build, convert, push, finetune, rank, export,
completion.

Only the standard library is imported at start; torch and friends load when a command
needs a model.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from zoo_core import __version__
from zoo_core.cli.cache import add_cli as add_cache_cli
from zoo_core.cli.completion import add_cli as add_completion_cli
from zoo_core.cli.evaluate import add_cli as add_evaluate_cli
from zoo_core.cli.export import add_cli as add_export_cli
from zoo_core.cli.finetune import add_cli as add_finetune_cli
from zoo_core.cli.lr_find import add_cli as add_lr_find_cli
from zoo_core.cli.models import add_cli as add_models_cli
from zoo_core.cli.plugins import add_cli as add_plugins_cli
from zoo_core.cli.push import wrap as wrap_push
from zoo_core.cli.rank import add_cli as add_rank_cli
from zoo_core.errors import ShadowedModelWarning, ZooError
from zoo_core.hub._hub import add_cli as add_hub_cli


def shown_default(action: argparse.Action) -> bool:
    """Whether ``--help`` shows ``action``'s default: any value but unset (None, False,
    SUPPRESS), compared by identity so that a default of 0 or 0.0 is shown."""
    default = getattr(action.default, "value", action.default)  # finetune's _Default
    return action.dest != "help" and not any(default is v for v in
                                             (None, False, argparse.SUPPRESS))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, unless the help already explains it or it is unset;
    an option without help text still gets a line with its default."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and shown_default(action):
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not shown_default(action) or "default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


# A message written for both doors says `resume=True (--resume)`; the CLI says `--resume`.
_API_WORDING = [
    (re.compile(r"\b[a-z]+(?:_[a-z]+)*=[^\s(),]+ \((--[a-z][\w-]*)\)"), r"\1"),
    (re.compile(r"\b[a-z]+_[a-z_]+ \((--[a-z][\w-]*)\)"), r"\1"),
    (re.compile(r"(--[a-z][\w-]*) \([a-z_]+=[^)]*\)"), r"\1"),
    (re.compile(r" ?\(Python: [^)]*\)"), ""),
]


# Keyword arguments that are flags of the same name on the command line.
_FLAG_ARGS = re.compile(
    r"\b(strategy|weights|num_classes|resume|overwrite|out|similarity|num_train_samples|"
    r"epochs|per_class)=(?:'([^']*)'|(True)|(None)|(<[^>]*>)|([\w./:-]+))?")


def _as_flag(match: re.Match[str]) -> str:
    flag = "--" + match.group(1).replace("_", "-")
    quoted, true, none, placeholder, bare = match.groups()[1:]
    if true:
        return flag
    value = quoted if quoted is not None else ("none" if none else placeholder or bare)
    return f"{flag} {value}" if value else flag


def cli_wording(message: str) -> str:
    """An error message in the command line's terms.

    >>> cli_wording("resume=True (--resume) needs out=DIR (--out)")
    '--resume needs --out'
    >>> cli_wording("use strategy='scratch', or pass weights=<path or URL>")
    'use --strategy scratch, or pass --weights <path or URL>'
    """
    for pattern, repl in _API_WORDING:
        message = pattern.sub(repl, message)
    return _FLAG_ARGS.sub(_as_flag, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zoo", description="A plugin-based model zoo for transfer learning.")
    parser.add_argument("--version", action="version", version=f"zoo (zoo-core) {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    add_models_cli(sub)  # zoo list | info | build | convert | hash
    add_plugins_cli(sub)  # zoo plugins [--check [NAME]]
    wrap_push(add_hub_cli(sub))  # zoo push DIR_OR_RUN REPO_ID
    add_cache_cli(sub)  # zoo cache verify | clean
    add_finetune_cli(sub)  # zoo finetune [MODEL] --data DIR ...
    add_lr_find_cli(sub)  # zoo lr-find [MODEL] --data DIR
    add_evaluate_cli(sub)  # zoo eval MODEL --data DIR, zoo predict MODEL IMAGE...
    add_rank_cli(sub)  # zoo rank --data DIR [--models ...]
    add_export_cli(sub)  # zoo export MODEL --format onnx --out FILE
    add_completion_cli(sub, parser)  # zoo completion bash|zsh
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # the registry already warns once per name; the command shows it, never raises
            warnings.simplefilter("default", ShadowedModelWarning)
            code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:  # `zoo list | head -1`: the reader has all it wants
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe
    except ZooError as exc:
        print(f"zoo: error: {cli_wording(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        from zoo_core._safefs import is_disk_full

        if not is_disk_full(exc):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"zoo: error: no space left{where}: {exc.strerror} (errno {exc.errno}); free "
              "space there and run the command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """A warning as one line in the command's terms, not a source location."""
    print(f"zoo: warning: {cli_wording(str(message))}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # captured or replaced stdout
        pass


if __name__ == "__main__":
    sys.exit(main())
