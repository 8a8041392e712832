"""``zoo finetune --config FILE`` and ``--print-config``.

FILE is YAML or JSON: a mapping of option names (``batch_size`` or ``batch-size``, as
``--print-config`` writes them), or a run's own ``run.json`` (or its folder), whose
recorded arguments are taken. Options typed on the command line win over the file; the
file wins over the parser's defaults. ``--print-config`` prints the effective options as
YAML that ``--config`` reads back.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zoo_core.errors import ConfigError

_SKIP = {"help", "func", "config", "print_config"}


def add_config(parser: argparse.ArgumentParser, recipe: Mapping[str, str]) -> None:
    """Give ``parser`` (zoo finetune) ``--config FILE`` and ``--print-config``.

    ``recipe`` maps a flag's destination to its field in run.json's ``recipe``."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="read options from FILE (YAML or JSON, or a run's run.json "
                             "or folder); options on the command line override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective options as YAML (for --config) and exit")
    command = parser.get_default("func")
    parser.set_defaults(func=lambda args: _run(parser, args, command, recipe))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace,
         command: Callable[[argparse.Namespace], int], recipe: Mapping[str, str]) -> int:
    if args.config is not None:
        apply_config(parser, args, Path(args.config).expanduser(), recipe)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(effective(parser, args), sort_keys=False), end="")
        return 0
    return command(args)


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest not in _SKIP}


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)  # zoo finetune's marked defaults


def effective(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Every option's value as the command will use it, in the parser's order."""
    return {dest: _plain(getattr(args, dest)) for dest in _actions(parser)}


def read_config(path: Path, recipe: Mapping[str, str]) -> dict[str, Any]:
    """The options in ``path`` (YAML, JSON, a run.json or a run folder) by name."""
    if path.is_dir():
        path = path / "run.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise ConfigError(f"--config {path} is not valid JSON: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"--config {path} is not valid YAML: "
                          f"{' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} holds a {type(data).__name__}; it must be a "
                          "mapping of option names to values (see zoo finetune "
                          "--print-config)")
    if isinstance(data.get("arguments"), dict) and "hyperparameters" in data:
        return _from_run(data["arguments"], path, recipe)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _from_run(arguments: Mapping[str, Any], path: Path,
              recipe: Mapping[str, str]) -> dict[str, Any]:
    """A run.json's recorded arguments as zoo finetune options."""
    out = dict(arguments)
    by_field = {field: dest for dest, field in recipe.items()}
    for field, value in dict(out.pop("recipe", None) or {}).items():
        out[by_field.get(field, field)] = value
    if "cache_features" in out:
        out["no_cache"] = out.pop("cache_features") is False
    if out.get("weights", "") is None:
        out["weights"] = "none"
    size = out.get("input_size")
    if isinstance(size, list):
        if len(set(size)) != 1:
            raise ConfigError(f"--config {path}: input_size {size} is not square; "
                              "--input-size takes one side")
        out["input_size"] = size[0]
    if isinstance(out.get("augment"), dict):
        raise ConfigError(f"--config {path}: augment holds create_transform options "
                          f"{out['augment']}, which only the Python API takes "
                          "(zoo_core.finetune(augment={...}))")
    if not out.get("sync_bn"):
        out.pop("sync_bn", None)  # the API's default; it has no flag
    return out


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, path: Path,
                 recipe: Mapping[str, str]) -> None:
    """Set each option of ``path`` that the command line left at its default."""
    actions = _actions(parser)
    aliases = {s.lstrip("-").replace("-", "_"): dest for dest, a in actions.items()
               for s in a.option_strings if s.startswith("--")}
    for key, value in read_config(path, recipe).items():
        dest = key if key in actions else aliases.get(key)
        if dest is None:
            close = difflib.get_close_matches(key, [*actions, *aliases], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--config {path}: unknown option {key!r}{hint} (zoo finetune "
                              "--print-config lists every option)")
        action = actions[dest]
        if getattr(args, dest) is not action.default:
            continue  # typed on the command line: it wins
        setattr(args, dest, _convert(action, key, value, path))


def _convert(action: argparse.Action, key: str, value: Any, path: Path) -> Any:
    default = _plain(action.default)
    where = f"--config {path}: {key}"
    if value is None:
        if default is None:
            return action.default
        raise ConfigError(f"{where} is null; give a value (default {default!r})")
    if action.nargs == 0 or isinstance(value, bool):  # a switch (--augment...)
        if not isinstance(value, bool) or (action.nargs != 0 and action.const is not True):
            wanted = "true or false" if action.nargs == 0 else "a value"
            raise ConfigError(f"{where} must be {wanted}, not {value!r}")
        return (action.const if value else action.default) if action.nargs == 0 else value
    if isinstance(action, argparse._AppendAction) and isinstance(value, (list, dict)):
        return _append_items(value)  # --model-kwargs: {key: value} or ["key=value", ...]
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{where} must be a single value, not {value!r}")
    if action.type is not None:
        try:
            value = action.type(str(value))
        except (TypeError, ValueError) as exc:
            kind = getattr(action.type, "__name__", "value")
            raise ConfigError(f"{where} must be {'an' if kind == 'int' else 'a'} {kind}, "
                              f"not {value!r}") from exc
    else:
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where} is {value!r}; choose from "
                          f"{', '.join(map(str, action.choices))}")
    return value


def _text(value: Any) -> str:
    """A model keyword argument's value as ``--model-kwargs`` parses it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def _append_items(value: list[Any] | dict[str, Any]) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}={_text(v)}" for k, v in value.items()]
    return [str(v) for v in value]
