"""``zoo plugins [--json] [--strict] [--check [NAME]] [--models PATTERN]``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _cmd_plugins(args: argparse.Namespace) -> int:
    from zoo_core.registry._registry import list_plugins

    if args.check is not None:
        return _check(args)
    rows = list_plugins()
    if args.json:
        print(json.dumps([{**p.__dict__, "provides": list(p.provides)} for p in rows],
                         indent=2))
    else:
        # columns as wide as their longest entry: long plugin or distribution names
        # keep the table aligned
        w_name = max([14, *(len(p.name) for p in rows)])
        w_dist = max([20, *(len(p.distribution) for p in rows)])
        w_ver = max([10, *(len(p.version) for p in rows)])
        print(f"{'plugin':<{w_name}} {'distribution':<{w_dist}} {'version':<{w_ver}} "
              f"{'status':<8} {'models':>6}  provides")
        for p in rows:
            print(f"{p.name:<{w_name}} {p.distribution:<{w_dist}} {p.version:<{w_ver}} "
                  f"{p.status:<8} {p.num_models:>6}  {', '.join(p.provides) or '-'}")
            if p.error:
                print(f"    {p.error}")
    return 1 if any(p.status == "failed" for p in rows) and args.strict else 0


def _check(args: argparse.Namespace) -> int:
    from zoo_core.build._validate import check_plugin
    from zoo_core.registry._registry import get_registry

    registry = get_registry()
    names = [args.check] if args.check else [p.name for p in registry.plugins()
                                             if p.status == "ok"]
    report: dict[str, Any] = {}
    failed = 0
    for name in names:
        info = next((p for p in registry.plugins() if p.name == name), None)
        if not args.check and args.models is None and info is not None and info.provides:
            report[name] = {"skipped": f"lists {info.num_models} models of "
                                       f"{', '.join(info.provides)}; check them with "
                                       f"`zoo plugins --check {name} --models PATTERN`"}
            continue
        results = check_plugin(name, pattern=args.models, weights=not args.no_weights,
                               registry=registry, raise_on_error=False)
        failed += sum(not r.ok for r in results)
        report[name] = [r.as_dict() for r in results]
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if failed else 0
    for name, results in report.items():
        if isinstance(results, dict):
            print(f"{name}: skipped, {results['skipped']}")
            continue
        bad = sum(not r["ok"] for r in results)
        print(f"{name}: {len(results) - bad} of {len(results)} model(s) ok")
        for r in results:
            print(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['model']}")
            for problem in r["problems"]:
                print(f"       - {problem}")
            for note in r["notes"]:
                print(f"       note: {note}")
    return 1 if failed else 0


def add_cli(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list plugins and their status, or check them")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 if a plugin failed")
    p.add_argument("--check", nargs="?", const="", default=None, metavar="NAME",
                   help="validate every model a plugin registers (all plugins without NAME), "
                        "building each on the meta device; exit 1 on a problem")
    p.add_argument("--models", metavar="PATTERN",
                   help="with --check: only models matching this wildcard pattern")
    p.add_argument("--no-weights", action="store_true",
                   help="with --check: skip checking local weights files")
    p.set_defaults(func=_cmd_plugins)
