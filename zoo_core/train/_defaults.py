"""Defaults of a finetune run, shown in ``zoo finetune --help``."""

DEFAULT_LR = {"linear_probe": 3e-2, "partial": 3e-3, "finetune": 1e-3, "scratch": 3e-3,
              "lp_ft": 1e-3, "first": 3e-3, "stage": 3e-3}
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 16
# Per strategy where it differs from DEFAULT_EPOCHS.
EPOCHS_BY_STRATEGY: dict[str, int] = {}
# lp_ft's second phase: each earlier stage trains at this fraction of the next one's rate.
LP_FT_LAYER_DECAY = 0.5


def default_epochs(kind: str) -> int:
    """Epochs when the caller gives none."""
    return EPOCHS_BY_STRATEGY.get(kind, DEFAULT_EPOCHS)
