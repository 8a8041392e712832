"""One error tree for everything zoo_core raises on purpose.

Every message says what happened, to which name or file, and what to do next.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DuplicateModelError",
    "ExportError",
    "HubError",
    "InvalidArgumentError",
    "PluginLoadError",
    "ShadowedModelWarning",
    "SpecError",
    "StrategyError",
    "TransferNotRecommendedError",
    "UnknownModelError",
    "WeightsError",
    "ZooError",
]


class ZooError(Exception):
    """Base class of every error zoo_core raises on purpose."""


class InvalidArgumentError(ZooError, ValueError):
    """A caller passed a value that cannot work (bad ``num_classes``, bad option)."""


class UnknownModelError(ZooError, KeyError):
    """No registered plugin provides the requested model name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateModelError(ZooError, LookupError):
    """An unqualified name is registered by more than one plugin."""


class PluginLoadError(ZooError, ImportError):
    """A plugin failed to import or raised in its hook (fatal only in strict mode)."""


class DatasetWarning(UserWarning):
    """Something in the data was ignored or is suspect (an empty class folder, ...)."""


class BadImageWarning(DatasetWarning):
    """Unreadable or corrupt images were skipped."""


class ShadowedModelWarning(UserWarning):
    """A plugin's model name is also registered by a plugin listed first in ``[plugins]
    prefer``: the bare name means the preferred one; ``plugin/name`` reaches the other."""


class SpecError(ZooError, ValueError):
    """A plugin's spec is inconsistent with the model it builds (head or stage missing...)."""


class ConfigError(ZooError, ValueError):
    """registry.toml (or a user override) is malformed; the message names file, line and key."""


class StrategyError(ZooError, ValueError):
    """A strategy cannot be applied (unknown name, ``partial:K`` out of range, no weights)."""


class TransferNotRecommendedError(StrategyError):
    """``auto`` found nothing to learn: none of the cross-validated probes on pretrained,
    random-init and raw-pixel features of a training sample beat a label-permutation
    baseline on the same features at ``p < [auto] refuse_p`` (0.01, divided by the number of
    feature sets tested); the pretrained probe's one-sided upper confidence bound
    (``[auto] refuse_bound_p``, 5%) lies below chance + ``[auto] refuse_gain`` (10 points),
    so the sample rules out a real gain (on a few dozen images it cannot, and auto trains
    instead); and -- where every class had ``[auto] pilot_min_per_class`` (50) images to
    hold out -- a short pilot trained on 80% of the training images did not beat the
    held-out 20%'s majority rate either (binomial, ``p < refuse_p``). Identical images are
    refused without the bound. The message names each probe, its baseline and p-value, the
    bound, and the pilot's accuracy or why it did not run;
    ``.figures`` holds every figure. ``--force`` (``force=True``) or an explicit strategy
    trains anyway."""


class WeightsError(ZooError, OSError):
    """Weights are missing, corrupt, pickled, or do not match their pinned sha256."""


class HubError(ZooError, OSError):
    """Saving, pushing or loading a Hugging Face Hub repo or a saved model folder failed."""


class ExportError(ZooError, RuntimeError):
    """A model could not be exported (ONNX, TorchScript, ``torch.export``) or the exported
    file does not compute what the model computes."""
