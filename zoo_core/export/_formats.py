"""One exporter and one loader per format. Each exporter writes ``path`` and returns the
name of the exporter that succeeded; each loader returns a callable that maps an input
batch (a CPU float tensor) to logits as a float64 numpy array."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zoo_core.errors import ExportError

# format name -> the usual file suffix (the one the docs and --help name)
FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch's exporters warn (jit is deprecated, tracer notes) and print progress; the
    parity check decides, so their chatter is not the user's business."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _batch_dim() -> Any:
    import torch

    return ({0: torch.export.Dim("batch", min=1, max=4096)},)


def _onnx(model: Any, sample: Any, path: Path) -> str:
    import torch
    import torch.onnx

    names = {"input_names": ["input"], "output_names": ["logits"]}
    try:
        with quiet():
            torch.onnx.export(model, (sample,), str(path), dynamo=True,
                              dynamic_shapes=_batch_dim(), external_data=False, **names)
        return "torch.onnx dynamo"
    except Exception as exc:  # the dynamo exporter fails on some graphs: the older one
        first = exc
    path.unlink(missing_ok=True)
    try:
        with quiet():
            torch.onnx.export(model, (sample,), str(path), dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              **names)
        return "torch.onnx TorchScript-based (the dynamo exporter failed: " \
               f"{_first_line(first)})"
    except Exception as exc:
        raise _not_exportable("onnx", f"dynamo exporter: {_first_line(first)}; "
                              f"TorchScript-based exporter: {_first_line(exc)}") from exc


def _torchscript(model: Any, sample: Any, path: Path) -> str:
    import torch

    try:
        with quiet():
            traced = torch.jit.trace(model, sample)
            torch.jit.save(traced, str(path))
    except Exception as exc:
        raise _not_exportable("torchscript", f"torch.jit.trace: {_first_line(exc)}") from exc
    return "torch.jit.trace"


def _exported_program(model: Any, sample: Any, path: Path) -> str:
    import torch

    try:
        with quiet():
            program = torch.export.export(model, (sample,), dynamic_shapes=_batch_dim())
            torch.export.save(program, str(path))
    except Exception as exc:
        raise _not_exportable("exported-program",
                              f"torch.export: {_first_line(exc)}") from exc
    return "torch.export"


EXPORTERS: dict[str, Callable[[Any, Any, Path], str]] = {
    "onnx": _onnx, "torchscript": _torchscript, "exported-program": _exported_program}


def loader(fmt: str, path: Path) -> Callable[[Any], Any]:
    """Load the written file back the way a deployment would."""
    import torch

    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"input": x.numpy()})[0].astype("float64")
    with quiet():
        module = (torch.jit.load(str(path), map_location="cpu") if fmt == "torchscript"
                  else torch.export.load(str(path)).module())

    def run(x: Any) -> Any:
        with torch.no_grad(), quiet():
            out = module(x)
        if not isinstance(out, torch.Tensor):
            raise ExportError(f"the exported {fmt} file returns {type(out).__name__}, "
                              "not a logits tensor")
        return out.double().numpy()

    return run


def check_runtime(fmt: str) -> None:
    """Fail before exporting when the parity check could not run afterwards."""
    if fmt != "onnx":
        return
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as exc:
        raise ExportError(
            f"--format onnx needs onnxruntime and onnxscript ({exc.name} is not installed): "
            "pip install 'zoo-core[export]'") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _not_exportable(fmt: str, why: str) -> ExportError:
    others = ", ".join(f for f in FORMATS if f != fmt)
    return ExportError(f"the model cannot be exported as {fmt} ({why}); try another "
                       f"--format ({others}) or make its forward traceable (no Python "
                       "control flow on tensor values)")
