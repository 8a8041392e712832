"""``zoo export MODEL --format onnx|torchscript|exported-program --out FILE``: the front
of :func:`zoo_core.export.export_model`. MODEL is a ``zoo finetune`` run (its ``best/``),
a saved folder, ``hf-hub:org/repo`` or a zoo name."""

from __future__ import annotations

import argparse
from typing import Any

# the formats are repeated here (not imported) so that building the parser stays cheap
FORMATS = ("onnx", "torchscript", "exported-program")


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo export`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser(
        "export", help="write a model as ONNX, TorchScript or a torch.export program",
        description="Export MODEL (a zoo finetune run, a saved folder, hf-hub:org/repo or a "
                    "zoo name) for deployment, with its preprocessing (size, mean, std, "
                    "interpolation) and label names in FILE.json beside it. The file is "
                    "loaded back (onnxruntime, torch.jit.load, torch.export.load) and must "
                    "match the model on a batch before it is put in place.")
    p.add_argument("model", metavar="MODEL", help="run folder, saved folder, hf-hub:org/repo "
                   "or zoo name")
    p.add_argument("--format", "-f", choices=FORMATS, default="onnx",
                   help="onnx (onnxruntime, TensorRT...; pip install 'zoo-core[export]'), "
                        "torchscript (torch.jit.load), exported-program (torch.export.load)")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help="file to write, e.g. model.onnx, model.pt or model.pt2")
    p.add_argument("--force", action="store_true", help="replace an existing FILE")
    p.set_defaults(func=_cmd_export)
    return p


def _cmd_export(args: argparse.Namespace) -> int:
    from zoo_core.cli.evaluate import find_run
    from zoo_core.export import export_model

    run, to_load = find_run(args.model)
    if run is not None and to_load != args.model:
        print(f"exporting {to_load} (the run's best model)")
    result = export_model(to_load, args.out, args.format, force=args.force)
    print(result.summary())
    return 0
