"""Model keyword arguments with pretrained weights: zoo_core vs timm's own loader.

One row per kwarg case. For each architecture a pretrained weights file is generated
(a normally built model at its pretrained num_classes, saved as safetensors in a temp dir),
then both sides build the model from that SAME file with the same kwargs:

* ours:   ``zoo_core.build_model(name, N, "finetune", weights=file, **kwargs)``
* theirs: ``timm.create_model(name, pretrained=True, num_classes=N,
  pretrained_cfg_overlay=dict(file=file, num_classes=N), **kwargs)``; for zoonet and
  torchvision (no timm loader) the reference is the architecture built with the kwargs and
  the file loaded by hand, with ``timm.models.adapt_input_conv`` on the input conv.

The logits of both (eval mode, one fixed input batch of the model's input size) are
compared: "equal" is bitwise ``torch.equal``, "max |diff|" the largest difference. Times
are in-process medians of --reps builds after one warm-up build, both sides alike (ours
includes resolve, strategy and metadata). Single-threaded torch for stable numbers.

    python benchmarks/bench_kwargs.py [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Case:
    name: str  # zoo_core name; "torchvision/..." or zoonet use a hand-made reference
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 10


CASES = [
    Case("resnet18", {"in_chans": 1}),
    Case("resnet18", {"in_chans": 1}, num_classes=1000),  # head kept: every logit pretrained
    Case("resnet18", {"global_pool": "max"}),
    Case("efficientnet_b0", {"drop_rate": 0.3, "drop_path_rate": 0.2}),
    Case("convnext_atto", {"in_chans": 4, "drop_path_rate": 0.1}),
    Case("vit_tiny_patch16_224", {"img_size": 128}),
    Case("vit_tiny_patch16_224", {"img_size": 96, "in_chans": 1, "drop_path_rate": 0.1}),
    Case("zoonet_s", {"in_chans": 1, "drop_rate": 0.1}),
    Case("torchvision/resnet18", {"in_chans": 1}),
]


def _median_ms(build: Callable[[], Any], reps: int) -> tuple[Any, float]:
    build()  # warm-up
    times, model = [], None
    for _ in range(reps):
        start = time.perf_counter()
        model = build()
        times.append((time.perf_counter() - start) * 1000)
    return model, statistics.median(times)


def _weights_file(case: Case, folder: Path) -> tuple[Path, int]:
    """A generated 'pretrained' file for the architecture, and its num_classes."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if case.name.startswith("torchvision/"):
        import torchvision

        model = torchvision.models.get_model(case.name.split("/", 1)[1], num_classes=1000)
        classes = 1000
    elif case.name.startswith("zoonet"):
        import zoo_core

        model = zoo_core.build_model(case.name, strategy="finetune")  # shipped glyph weights
        classes = model.zoo.num_classes
    else:
        import timm

        model = timm.create_model(case.name, num_classes=1000)
        classes = 1000
    path = folder / f"{case.name.replace('/', '_')}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, classes


def _reference(case: Case, path: Path, classes: int) -> Callable[[], Any]:
    """Build the same model without zoo_core."""
    from safetensors.torch import load_file

    if case.name.startswith(("torchvision/", "zoonet")):
        from timm.models import adapt_input_conv

        def by_hand() -> Any:
            from zoo_core.registry._registry import get_registry, resolve_builder

            spec = get_registry().resolve(case.name).spec
            model = resolve_builder(spec)(num_classes=case.num_classes,
                                          **spec.builder_kwargs, **case.kwargs)
            state = load_file(str(path))
            own = model.state_dict()
            for key, value in list(state.items()):
                if key in own and own[key].shape != value.shape:
                    if value.ndim == 4 and own[key].shape[1] != value.shape[1]:
                        state[key] = adapt_input_conv(own[key].shape[1], value)
                    else:
                        del state[key]  # the new head
            model.load_state_dict(state, strict=False)
            return model
        return by_hand

    import timm

    def with_timm() -> Any:
        return timm.create_model(case.name, pretrained=True, num_classes=case.num_classes,
                                 pretrained_cfg_overlay={"file": str(path),
                                                         "num_classes": classes},
                                 **case.kwargs)
    return with_timm


def run_case(case: Case, folder: Path, reps: int) -> dict[str, Any]:
    import torch

    import zoo_core

    path, classes = _weights_file(case, folder)

    def ours() -> Any:
        return zoo_core.build_model(case.name, case.num_classes, "finetune", weights=path,
                                    **case.kwargs)

    model, ours_ms = _median_ms(ours, reps)
    ref, theirs_ms = _median_ms(_reference(case, path, classes), reps)
    chans, height, width = model.zoo.data_config.input_size
    torch.manual_seed(1)
    x = torch.randn(2, chans, height, width)
    if case.num_classes != classes:  # a new head is random on both sides: use ours
        head = model.zoo.head
        ref.get_submodule(head).load_state_dict(model.get_submodule(head).state_dict())
    with torch.no_grad():
        a, b = model.eval()(x), ref.eval()(x)
    return {
        "model": case.name, "kwargs": case.kwargs, "num_classes": case.num_classes,
        "input": f"{chans}x{height}x{width}", "load": model.zoo.extra["load"],
        "ours_ms": round(ours_ms, 1), "theirs_ms": round(theirs_ms, 1),
        "equal": bool(torch.equal(a, b)), "max_abs_diff": float((a - b).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            rows.append(run_case(case, Path(tmp), args.reps))
    print("| model | kwargs | classes | input | load | ours ms | reference ms | logits "
          "equal | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kw = ", ".join(f"{k}={v!r}" for k, v in r["kwargs"].items())
        print(f"| {r['model']} | {kw} | {r['num_classes']} | {r['input']} | {r['load']} | "
              f"{r['ours_ms']} | {r['theirs_ms']} | {'yes' if r['equal'] else 'no'} | "
              f"{r['max_abs_diff']:.3g} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
