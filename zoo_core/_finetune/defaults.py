"""Defaults of a finetune run, shown in ``zoo finetune --help``."""

DEFAULT_LR = {"linear_probe": 3e-2, "partial": 3e-3, "finetune": 1e-3, "scratch": 3e-3}
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 16
