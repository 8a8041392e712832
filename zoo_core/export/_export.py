"""``export_model``: a model as a deployment file, checked before it is in place.

The file is written to a temp file beside ``out``, loaded back the way a deployment
would (onnxruntime, ``torch.jit.load``, ``torch.export.load``) and run on a batch whose
size differs from the one it was exported with (so a batch size baked into the graph is
caught); only when its logits match the eager model's within ``ATOL + RTOL * |eager|``
are the file and its ``.json`` renamed into place. A failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.errors import ExportError, InvalidArgumentError

ATOL = 1e-4  # logits: |exported - eager| <= ATOL + RTOL * |eager|, elementwise
RTOL = 1e-3
EXPORT_BATCH = 2  # the example batch the graph is traced with
CHECK_BATCH = 3  # the parity batch: another size, so a fixed batch dimension is caught


@dataclass(frozen=True)
class Exported:
    """What :func:`export_model` wrote and how close it is to the eager model."""

    path: Path
    metadata_path: Path
    format: str
    exporter: str
    max_abs_diff: float
    metadata: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        pre = self.metadata["preprocessing"]
        labels = self.metadata["labels"]
        size = "x".join(str(v) for v in pre["input_size"])
        return (f"wrote {self.path} ({self.format}, {self.exporter}, "
                f"{self.path.stat().st_size / 1e6:.2f} MB)\n"
                f"      {self.metadata_path} (preprocessing: {pre['color']} {size}, "
                f"{pre['interpolation']}, mean {pre['mean']}, std {pre['std']}; "
                f"{len(labels) if labels else 'no'} label names)\n"
                f"parity: max |exported - eager| = {self.max_abs_diff:.2g} on a batch of "
                f"{CHECK_BATCH} (tolerance {ATOL:g} + {RTOL:g} * |eager|)")


def export_model(model: Any, out: str | os.PathLike[str], format: str = "onnx", *,
                 force: bool = False, seed: int = 0) -> Exported:
    """Write ``model`` to ``out`` as ``format`` (``onnx``, ``torchscript`` or
    ``exported-program``) and ``out + ".json"`` with its preprocessing and labels.

    ``model`` is a built zoo_core model or anything :func:`zoo_core.build_model` takes (a
    zoo name, ``hf-hub:org/repo``, a saved folder). The input's batch dimension is
    dynamic. An existing ``out`` is refused unless ``force=True``. Raises
    :class:`~zoo_core.errors.ExportError` when the model cannot be exported or the file
    does not match the model (then nothing is written)."""
    from zoo_core.export._formats import FORMATS, check_runtime

    if format not in FORMATS:
        raise InvalidArgumentError(
            f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    meta_out = out.with_name(out.name + ".json")
    for path in (out, meta_out):
        if path.is_dir():
            raise InvalidArgumentError(f"{path} is a directory: give the file to write, "
                                       f"e.g. {path / ('model' + FORMATS[format])}")
        if (path.exists() or path.is_symlink()) and not force:
            raise InvalidArgumentError(f"{path} exists; pass force=True (--force) to replace "
                                       "it")
    check_runtime(format)
    import torch

    source = str(model) if isinstance(model, (str, os.PathLike)) else None
    if source is not None:
        from zoo_core.build._builder import build_model

        model = build_model(str(model), device=torch.device("cpu"))
    if not hasattr(model, "zoo"):
        raise InvalidArgumentError("export_model takes a zoo_core model (one with .zoo, "
                                   "from build_model) or a name/folder build_model takes")
    source = source or model.zoo.name
    if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
        import copy

        model = copy.deepcopy(model).to("cpu")  # the caller's model stays where it is
    was_training = model.training
    try:
        return _export(model.eval(), out, meta_out, format, source, seed)
    finally:
        model.train(was_training)


def _export(model: Any, out: Path, meta_out: Path, format: str, source: Any,
            seed: int) -> Exported:
    import torch

    from zoo_core.export._formats import EXPORTERS

    shape = tuple(int(v) for v in model.zoo.data_config.input_size)
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(EXPORT_BATCH, *shape, generator=gen)
    check = torch.randn(CHECK_BATCH, *shape, generator=gen)
    try:
        with torch.no_grad():
            eager = model(check)
    except Exception as exc:
        raise ExportError(f"{source} fails on a batch of {CHECK_BATCH} random "
                          f"{'x'.join(map(str, shape))} inputs before any export "
                          f"({type(exc).__name__}: {str(exc).strip()[:300]})") from exc
    if not isinstance(eager, torch.Tensor):
        raise ExportError(f"{source} returns {type(eager).__name__}, not a logits tensor; "
                          "only classifiers with one tensor output can be exported")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    meta_tmp = meta_out.with_name(f".{meta_out.name}.{os.getpid()}.tmp")
    try:
        exporter = EXPORTERS[format](model, sample, tmp)
        diff = _parity(format, tmp, check, eager.double().numpy(), source)
        from zoo_core.export._metadata import record

        meta = record(model, source=str(source), fmt=format, exporter=exporter,
                      file=out.name, parity={"max_abs_diff": diff, "atol": ATOL,
                                             "rtol": RTOL, "batch": CHECK_BATCH,
                                             "input": "standard normal, seeded"})
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out)
        os.replace(meta_tmp, meta_out)
    except BaseException:
        for path in (tmp, meta_tmp):
            path.unlink(missing_ok=True)
        raise
    return Exported(out, meta_out, format, exporter, diff, meta)


def _parity(fmt: str, path: Path, check: Any, eager: Any, source: Any) -> float:
    import numpy as np

    from zoo_core.export._formats import loader

    try:
        got = loader(fmt, path)(check)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"the exported {fmt} file of {source} cannot run a batch of "
                          f"{CHECK_BATCH} ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                          "); is the batch size fixed in its graph?") from exc
    if got.shape != eager.shape:
        raise ExportError(f"the exported {fmt} file of {source} returns shape "
                          f"{list(got.shape)} for a batch of {CHECK_BATCH}, the model "
                          f"{list(eager.shape)}; is the batch size fixed in its graph?")
    diff = float(np.max(np.abs(got - eager))) if got.size else 0.0
    if not np.allclose(got, eager, atol=ATOL, rtol=RTOL):
        raise ExportError(f"the exported {fmt} file of {source} does not compute what the "
                          f"model computes: max |exported - eager| = {diff:.3g} on a batch "
                          f"of {CHECK_BATCH} (tolerance {ATOL:g} + {RTOL:g} * |eager|); "
                          "nothing was written. A forward that depends on tensor values "
                          "(Python if/float() on them) is traced as a constant: try another "
                          "--format")
    return diff
