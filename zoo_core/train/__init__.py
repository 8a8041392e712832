"""The main job on accelerate: measure, pilot, train, checkpoint, report.

Split by responsibility (see :mod:`zoo_core.train._pipeline`). It may import
:mod:`zoo_core.hub` and every part below it, never :mod:`zoo_core.rank` or the CLI
(``zoo finetune`` is :mod:`zoo_core.cli.finetune`).

- :mod:`._pipeline`  ``finetune()``: data -> strategy -> model -> training -> outputs
- :mod:`._measure`   probes on pretrained / random-init features, LogME
- :mod:`._evidence`  is anything learnable? probes vs a label-permutation baseline, raw pixels
- :mod:`._auto`      ``auto``: measure, decide (:mod:`zoo_core.strategies._decide`), pilot, explain
- :mod:`._features`  head inputs of the frozen backbone, captured once per image
- :mod:`._trainer`   the training loop and evaluation
- :mod:`._checkpoint` safetensors + JSON checkpoints, RNG state, exact resume
- :mod:`._report`    metrics, curves, the best model folder, the Hub push
- :mod:`._dist`      rank, world size, device
- :mod:`._compare`   every strategy side by side on the embedded task
- :mod:`._feature_cache` head inputs per (model, weights sha256, data hash), shared with rank
"""

from __future__ import annotations

from zoo_core.train._compare import COMPARE_STRATEGIES, run_default
from zoo_core.train._defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR
from zoo_core.train._loop import EXIT_AFTER_EPOCH_ENV, EXIT_CODE
from zoo_core.train._measure import Measurements, ProbeScore, measure_transfer
from zoo_core.train._pipeline import finetune
from zoo_core.train._results import EpochMetrics, FinetuneResult

__all__ = ["COMPARE_STRATEGIES", "DEFAULT_BATCH_SIZE", "DEFAULT_EPOCHS", "DEFAULT_LR",
           "EXIT_AFTER_EPOCH_ENV", "EXIT_CODE", "EpochMetrics", "FinetuneResult",
           "Measurements", "ProbeScore", "finetune", "measure_transfer", "run_default"]
