"""The ``zoo`` command: list, info, plugins, build, convert, push, finetune, rank.

Only the standard library is imported at start; torch and friends load when a command
needs a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from zoo_core._cache_admin import add_cli as add_cache_cli
from zoo_core._evaluate import add_cli as add_evaluate_cli
from zoo_core._finetune import add_cli as add_finetune_cli
from zoo_core._hub import add_cli as add_hub_cli
from zoo_core._rank import add_cli as add_rank_cli
from zoo_core.errors import ZooError


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo_core._registry import list_models

    pretrained = True if args.pretrained else (False if args.no_pretrained else None)
    names = list_models(args.pattern, pretrained=pretrained, plugin=args.plugin)
    print("\n".join(names))
    if sys.stdout.isatty():
        print(f"({len(names)} models)", file=sys.stderr)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from zoo_core._registry import list_plugins

    rows = list_plugins()
    if args.json:
        print(json.dumps([p.__dict__ for p in rows], indent=2))
        return 0
    print(f"{'plugin':<14} {'distribution':<20} {'version':<10} {'status':<8} models")
    for p in rows:
        print(f"{p.name:<14} {p.distribution:<20} {p.version:<10} {p.status:<8} {p.num_models}")
        if p.error:
            print(f"    {p.error}")
    return 1 if any(p.status == "failed" for p in rows) and args.strict else 0


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo_core._registry import get_model_info

    spec = get_model_info(args.name)
    info: dict[str, Any] = {
        "name": spec.name,
        "plugin": spec.plugin,
        "distribution": f"{spec.distribution} {spec.distribution_version}".strip(),
        "head": spec.head,
        "stages": list(spec.stages),
        "data_config": spec.data_config.as_dict(),
        "license": spec.license,
        "default_weights": spec.weights_tag("default").tag if spec.weights else None,
        "weights": [
            {"tag": w.tag, "source": w.source, "sha256": w.sha256, "revision": w.revision,
             "num_classes": w.num_classes, "license": w.license}
            for w in spec.weights
        ],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "weights":
            print(f"weights ({len(value)} tags):")
            for w in value:
                pin = f" sha256={w['sha256']}" if w["sha256"] else " (not pinned)"
                print(f"  {w['tag']:<24} {w['source']}{pin}")
        else:
            print(f"{key}: {value}")
    return 0


def summarize(model: Any) -> str:
    """Trainable vs frozen parameters per stage, the head, and the weights used."""
    from zoo_core._strategies import _groups

    info = model.zoo
    groups = _groups(model, info.head, info.stages)
    labels = {-1: f"head: {info.head}", len(info.stages): "after the last stage"}
    labels.update({i: s for i, s in enumerate(info.stages)})
    if info.stages and info.stages[0] != "stem":
        labels[0] = f"{info.stages[0]} (with the stem)"
    labels[-2] = "top-level tensors"
    counts: dict[int, list[int]] = {}
    for name, param in model.named_parameters():
        group = groups.get(name.rpartition(".")[0], len(info.stages))
        row = counts.setdefault(group, [0, 0])
        row[0 if param.requires_grad else 1] += param.numel()
    lines = [
        f"model     {info.plugin}/{info.name}  ({info.distribution} {info.distribution_version})",
        f"weights   {info.weights_tag or 'none (random init)'}"
        + (f"  {info.weights_source}" if info.weights_source else "")
        + (f"\n          sha256 {info.weights_sha256}" if info.weights_sha256 else ""),
        f"strategy  {info.strategy}: {info.strategy_reason}",
        f"head      {info.head} -> {info.num_classes} classes"
        + (f" (dropped pretrained head: {', '.join(info.dropped_head_keys)})"
           if info.dropped_head_keys else ""),
        f"input     {info.data_config.input_size} mean={info.data_config.mean} "
        f"std={info.data_config.std} {info.data_config.interpolation}",
        "",
        f"{'group':<36} {'trainable':>12} {'frozen':>12}",
    ]
    order = sorted(counts, key=lambda g: (g == -1, g))
    for g in order:
        t, f = counts[g]
        lines.append(f"{labels.get(g, str(g)):<36} {t:>12,} {f:>12,}")
    tt = sum(c[0] for c in counts.values())
    ff = sum(c[1] for c in counts.values())
    lines.append(f"{'total':<36} {tt:>12,} {ff:>12,}")
    return "\n".join(lines)


def _cmd_build(args: argparse.Namespace) -> int:
    from zoo_core._builder import build_model

    weights: str | None = args.weights
    if weights is not None and weights.lower() == "none":
        weights = None
    model = build_model(
        args.name, args.num_classes, args.strategy, weights=weights,
        num_train_samples=args.num_train_samples, similarity=args.similarity,
        fast=not args.no_fast,
    )
    print(summarize(model))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from zoo_core._weights import convert_checkpoint

    digest = convert_checkpoint(args.src, args.dst, overwrite=args.overwrite)
    print(f"wrote {args.dst}\nsha256 {digest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo", description="A plugin-based model zoo for transfer learning.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list model names")
    p.add_argument("pattern", nargs="?", help="wildcard pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="only models with weights")
    p.add_argument("--no-pretrained", action="store_true", help="only models without weights")
    p.add_argument("--plugin", help="only models of this plugin")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("plugins", help="list plugins and their status")
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 if a plugin failed")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("info", help="show a model's spec")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("build", help="build a model and summarise it")
    p.add_argument("name")
    p.add_argument("--num-classes", "-n", type=int, required=True)
    p.add_argument("--strategy", "-s", default=None,
                   help="linear_probe, finetune, partial:K, scratch or auto (default: "
                        "registry.toml [defaults] strategy)")
    p.add_argument("--weights", "-w", default="default",
                   help="tag, .safetensors path, URL, hf-hub:org/repo, or none")
    p.add_argument("--num-train-samples", type=int, help="hint for auto")
    p.add_argument("--similarity", type=float, help="hint for auto, in [0, 1]")
    p.add_argument("--no-fast", action="store_true", help="skip the meta-device fast path")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("convert", help="convert a pickle checkpoint to safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_convert)

    add_hub_cli(sub)  # zoo push DIR REPO_ID
    add_cache_cli(sub)  # zoo cache verify | clean
    add_finetune_cli(sub)  # zoo finetune [MODEL] --data DIR ...
    add_evaluate_cli(sub)  # zoo eval MODEL --data DIR, zoo predict MODEL IMAGE...
    add_rank_cli(sub)  # zoo rank --data DIR [--models ...]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
