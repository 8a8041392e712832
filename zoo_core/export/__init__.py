"""Deployment files: ``export_model`` writes a model as ONNX, TorchScript or a
``torch.export`` program, with its preprocessing beside it as JSON, and checks the file
computes what the model computes before it is in place.

It may import :mod:`zoo_core.build`, :mod:`zoo_core.data` and every part below them,
never :mod:`zoo_core.train`, :mod:`zoo_core.rank` or the CLI (``zoo export`` is
:mod:`zoo_core.cli.export`).

- :mod:`._export`     ``export_model``: build, export to a temp file, parity check, rename
- :mod:`._formats`    one exporter and one loader per format
- :mod:`._metadata`   the preprocessing record written beside the file

Nothing here imports torch at import time.
"""

from __future__ import annotations

from zoo_core.export._export import ATOL, RTOL, Exported, export_model
from zoo_core.export._formats import FORMATS

__all__ = ["ATOL", "FORMATS", "RTOL", "Exported", "export_model"]
