"""Every option of every ``zoo`` subcommand shows its default in ``--help`` (the docs say
so): the test walks the parsers that :func:`zoo_core.cli.main.build_parser` builds."""

from __future__ import annotations

import argparse
import re

from zoo_core.cli.main import build_parser, shown_default


def _parsers(parser: argparse.ArgumentParser, name: str = "zoo"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _hidden_defaults(parser: argparse.ArgumentParser, name: str) -> list[str]:
    """``name --flag (default X)`` for each option whose help lacks its default."""
    missing = []
    for action in parser._actions:
        if not shown_default(action) or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings and action.nargs == 0:  # store_const/_true: nothing to show
            continue
        default = getattr(action.default, "value", action.default)
        formatter = parser._get_formatter()
        text = formatter._format_action(action).strip()
        help_part = text[len(formatter._format_action_invocation(action)):]
        spelled = {str(default)}  # `(default 24)` for 24.0 is the same value
        if isinstance(default, float) and default.is_integer():
            spelled.add(str(int(default)))
        if not any(re.sub(r"\s", "", s) in re.sub(r"\s", "", help_part) for s in spelled):
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest} "
                           f"(default {default!r}): {text.strip()!r}")
    return missing


def test_every_option_shows_its_default():
    walked = list(_parsers(build_parser()))
    names = {name for name, _ in walked}
    assert {"zoo finetune", "zoo eval", "zoo predict", "zoo rank", "zoo list"} <= names
    checked = sum(1 for _, p in walked for a in p._actions if shown_default(a))
    assert checked > 20  # the walk reached the subcommands' options
    missing = [line for name, p in walked for line in _hidden_defaults(p, name)]
    assert not missing, "\n".join(missing)


def test_check_catches_a_hidden_default():
    # the check is not trivially true: a plain parser's help-less `--seed 0` fails it
    plain = argparse.ArgumentParser(prog="x")
    plain.add_argument("--seed", type=int, default=0)
    plain.add_argument("--top-k", type=int, default=5, help="how many")
    assert len(_hidden_defaults(plain, "x")) == 2


def test_finetune_help_names_the_issue_defaults(capsys):
    import pytest

    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--help"])
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    for flag, value in [("--seed SEED", "default: 0"), ("--val-fraction VAL_FRACTION",
                        "default: 0.2"), ("--warmup-lr WARMUP_LR", "default: 1e-05")]:
        assert f"{flag} {value}" in out
