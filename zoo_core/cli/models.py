"""``zoo list``, ``zoo info``, ``zoo build``, ``zoo convert`` and ``zoo hash``.

Listing imports no torch (names come from the registry's cached name lists); ``info``
and ``build`` build the model (``info`` on the meta device) to count parameters per stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zoo_core.errors import InvalidArgumentError


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# -- zoo list ----------------------------------------------------------------------------

def _cmd_list(args: argparse.Namespace) -> int:
    from zoo_core.registry._registry import get_registry

    if args.pretrained and args.no_pretrained:
        raise InvalidArgumentError("--pretrained and --no-pretrained exclude each other; "
                                   "give one of them, or neither for every model")
    pretrained = True if args.pretrained else (False if args.no_pretrained else None)
    rows = get_registry().models(args.pattern, pretrained=pretrained, plugin=args.plugin,
                                 tags=args.tags)
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    if args.long:
        width = max((len(r.name) for r in rows), default=0)
        for r in rows:
            note = (f"  (shadowed by {r.shadowed_by}: {r.name.rpartition('/')[2]!r} means "
                    f"that one)" if r.shadowed_by else
                    f"  (shadows {', '.join(r.shadows)})" if r.shadows else "")
            print(f"{r.name:<{width}}  {r.plugin}{note}")
    else:
        print("\n".join(r.name for r in rows))
    if sys.stdout.isatty():
        print(f"({len(rows)} {'weights tags' if args.tags else 'models'})", file=sys.stderr)
    return 0


# -- zoo info ----------------------------------------------------------------------------

def _meta_table(spec: Any, num_classes: int) -> Any:
    from zoo_core.build._validate import meta_model
    from zoo_core.layout._layout import stage_table
    from zoo_core.registry._registry import resolve_builder

    model = meta_model(spec, resolve_builder(spec), num_classes)
    return stage_table(model, spec.head, spec.stages)


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo_core.build._author_checks import default_weights_problem
    from zoo_core.registry._registry import get_model_info

    spec = get_model_info(args.name)
    default = spec.weights_tag("default")
    problem = default_weights_problem(spec)
    num_classes = (default.num_classes if default is not None and default.num_classes
                   else 1000)
    info: dict[str, Any] = {
        "name": spec.name,
        "plugin": spec.plugin,
        "distribution": f"{spec.distribution} {spec.distribution_version}".strip(),
        "head": spec.head,
        "stages": list(spec.stages),
        "data_config": spec.data_config.as_dict(),
        "license": spec.license,
        # as get_model_info() says it; a tag that does not exist is shown, with the fix
        "default_weights": spec.default_weights,
        "weights": [
            {"tag": w.tag, "source": w.source, "sha256": w.sha256, "revision": w.revision,
             "num_classes": w.num_classes, "license": w.license}
            for w in spec.weights
        ],
    }
    table = None if args.no_params else _meta_table(spec, num_classes)
    if table is not None:
        info["parameters"] = {"num_classes": num_classes, **table.as_dict()}
    if problem:
        info["problems"] = [problem]
    if args.json:
        _print_json(info)
        return 0
    for key, value in info.items():
        if key == "problems":
            continue
        if key == "weights":
            print(f"weights ({len(value)} tags):")
            for w in value:
                pin = f" sha256={w['sha256']}" if w["sha256"] else " (not pinned)"
                print(f"  {w['tag']:<24} {w['source']}{pin}")
        elif key == "default_weights" and problem:
            print(f"{key}: {value}  (error: {problem})")
        elif key != "parameters":
            print(f"{key}: {value}")
    if table is not None:
        print(f"\nparameters with a {num_classes}-class head (partial:K trains the last K "
              "stages and the head):")
        print("\n".join(f"  {line}" for line in table.lines()))
    return 0


# -- zoo build ---------------------------------------------------------------------------

def summarize(model: Any) -> str:
    """Trainable vs frozen parameters per stage, the head, and the weights used."""
    from zoo_core.layout._layout import stage_groups, stage_table

    info = model.zoo
    groups = stage_groups(model, info.head, info.stages)
    n = len(info.stages)
    labels = {-1: f"head: {info.head}", n: "after the last stage", -2: "top-level tensors"}
    labels.update({i: s for i, s in enumerate(info.stages)})
    if info.stages and info.stages[0] != "stem":
        labels[0] = f"{info.stages[0]} (with the stem)"
    counts: dict[int, list[int]] = {}
    for name, param in model.named_parameters():
        group = groups.get(name.rpartition(".")[0], n)
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
    for g in sorted(counts, key=lambda g: (g == -1, g)):
        t, f = counts[g]
        lines.append(f"{labels.get(g, str(g)):<36} {t:>12,} {f:>12,}")
    tt = sum(c[0] for c in counts.values())
    ff = sum(c[1] for c in counts.values())
    lines.append(f"{'total':<36} {tt:>12,} {ff:>12,}")
    lines += ["", "what partial:K would train:"]
    lines += [f"  {line}" for line in stage_table(model, info.head, info.stages).lines()]
    return "\n".join(lines)


def _build_json(model: Any) -> dict[str, Any]:
    from zoo_core.layout._layout import stage_table

    info = model.zoo
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "model": f"{info.plugin}/{info.name}",
        "distribution": f"{info.distribution} {info.distribution_version}".strip(),
        "weights": {"tag": info.weights_tag, "source": info.weights_source,
                    "sha256": info.weights_sha256},
        "strategy": info.strategy, "reason": info.strategy_reason,
        "num_classes": info.num_classes, "head": info.head,
        "dropped_head_keys": list(info.dropped_head_keys),
        "data_config": info.data_config.as_dict(),
        "trainable_params": trainable, "frozen_params": total - trainable,
        "parameters": stage_table(model, info.head, info.stages).as_dict(),
    }


def _cmd_build(args: argparse.Namespace) -> int:
    from zoo_core.build._builder import build_model

    weights: str | None = args.weights
    if weights is not None and weights.lower() == "none":
        weights = None
    model = build_model(
        args.name, args.num_classes, args.strategy, weights=weights,
        num_train_samples=args.num_train_samples, similarity=args.similarity,
        fast=not args.no_fast,
    )
    if args.json:
        _print_json(_build_json(model))
    else:
        print(summarize(model))
    return 0


# -- zoo convert, zoo hash ---------------------------------------------------------------

def _cmd_convert(args: argparse.Namespace) -> int:
    from zoo_core.weights._weights import convert_checkpoint

    digest = convert_checkpoint(args.src, args.dst, overwrite=args.overwrite)
    print(f"wrote {args.dst}\nsha256 {digest}")
    return 0


def _cmd_hash(args: argparse.Namespace) -> int:
    from zoo_core.build._validate import hash_file

    for path in args.files:
        digest = hash_file(path)
        print(f"{digest}  {path}" if len(args.files) > 1 else digest)
    return 0


def add_cli(sub: Any) -> None:
    p = sub.add_parser("list", help="list model names (no torch import)")
    p.add_argument("pattern", nargs="?", help="wildcard pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="only models with weights")
    p.add_argument("--no-pretrained", action="store_true", help="only models without weights")
    p.add_argument("--plugin", help="only models of this plugin")
    p.add_argument("--tags", action="store_true",
                   help="list every pretrained NAME.TAG (timm's arch.tag names)")
    p.add_argument("--long", "-l", action="store_true",
                   help="add the plugin column; shadowed names are marked")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show a model's spec and parameters per stage")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-params", action="store_true",
                   help="skip building the model on the meta device to count parameters")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("build", help="build a model and summarise it")
    p.add_argument("name")
    p.add_argument("--num-classes", "-n", type=int, default=None,
                   help="classes of the new head (default: the pretrained or saved model's "
                        "own head, e.g. the labels of an hf-hub: repo or a run's best/)")
    p.add_argument("--strategy", "-s", default=None,
                   help="linear_probe, finetune, partial:K, first:K, stage:I, scratch or "
                        "auto (default: "
                        "registry.toml [defaults] strategy)")
    p.add_argument("--weights", "-w", default="default",
                   help="tag, .safetensors path, URL, hf-hub:org/repo, or none")
    p.add_argument("--num-train-samples", type=int, help="hint for auto")
    p.add_argument("--similarity", type=float, help="hint for auto, in [0, 1]")
    p.add_argument("--no-fast", action="store_true", help="skip the meta-device fast path")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("convert", help="convert a pickle checkpoint to safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("hash", help="print the sha256 to pin a weights file with")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_cmd_hash)
