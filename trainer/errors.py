"""Typed trial failures: the class name is the policy the coordinator applies."""

from __future__ import annotations


class TrialFailed(Exception):
    """This trial cannot finish; record the reason, fail the trial and go on with the study."""

    kind = "failed"


class InvalidConfig(TrialFailed):
    """The configuration cannot be trained (e.g. unfreeze depth beyond the backbone)."""

    kind = "invalid_config"


class OutOfMemory(TrialFailed):
    """The device ran out of memory; a smaller batch or backbone may fit."""

    kind = "out_of_memory"


class NonFiniteLoss(TrialFailed):
    """The training loss became NaN or infinite; the trial diverged."""

    kind = "non_finite_loss"


class WeightsUnavailable(TrialFailed):
    """Pretrained weights could not be loaded (offline, missing or mismatched file)."""

    kind = "weights_unavailable"


class FatalError(Exception):
    """Stop the whole search: retrying other trials cannot help (e.g. the data is unreadable)."""
