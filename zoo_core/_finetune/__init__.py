"""The main job, split by responsibility (see :mod:`zoo_core._finetune.pipeline`).

- :mod:`.pipeline`   ``finetune()``: data -> strategy -> model -> training -> outputs
- :mod:`.measure`    probes on pretrained / random-init features, LogME
- :mod:`.auto`       ``auto``: measure, decide (:mod:`zoo_core._decide`), pilot, explain
- :mod:`.features`   head inputs of the frozen backbone, captured once per image
- :mod:`.trainer`    the training loop and evaluation
- :mod:`.checkpoint` safetensors + JSON checkpoints, RNG state, exact resume
- :mod:`.report`     metrics, curves, the best model folder, the Hub push
- :mod:`.dist`       rank, world size, device
- :mod:`.compare`    every strategy side by side on the embedded task
- :mod:`.cli`        ``zoo finetune``
"""

from __future__ import annotations

from zoo_core._finetune.cli import add_cli
from zoo_core._finetune.compare import COMPARE_STRATEGIES, run_default
from zoo_core._finetune.defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR
from zoo_core._finetune.loop import EXIT_AFTER_EPOCH_ENV, EXIT_CODE
from zoo_core._finetune.measure import Measurements, ProbeScore, measure_transfer
from zoo_core._finetune.pipeline import finetune
from zoo_core._finetune.results import EpochMetrics, FinetuneResult

__all__ = ["COMPARE_STRATEGIES", "DEFAULT_BATCH_SIZE", "DEFAULT_EPOCHS", "DEFAULT_LR",
           "EXIT_AFTER_EPOCH_ENV", "EXIT_CODE", "EpochMetrics", "FinetuneResult", "add_cli",
           "Measurements", "ProbeScore", "finetune", "measure_transfer", "run_default"]
