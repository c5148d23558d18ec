"""One trial, trained and scored by stratified k-fold cross-validation.

Importing this package is cheap: TensorFlow loads only when ``train_trial`` (or a module that
needs it) is first used, so spaces and the CLI can import the records without paying for it.
This package never imports Optuna.
"""

from __future__ import annotations

from typing import Any

from trainer.config import (
    AUGMENT_LEVELS,
    BACKBONES,
    OPTIMIZERS,
    BackboneInfo,
    Decision,
    TrialConfig,
    backbone_info,
)
from trainer.errors import (
    FatalError,
    InvalidConfig,
    NonFiniteLoss,
    OutOfMemory,
    TrialFailed,
    WeightsUnavailable,
)

__all__ = [
    "AUGMENT_LEVELS",
    "BACKBONES",
    "OPTIMIZERS",
    "BackboneInfo",
    "Decision",
    "FatalError",
    "InvalidConfig",
    "NonFiniteLoss",
    "OutOfMemory",
    "TrialConfig",
    "TrialFailed",
    "WeightsUnavailable",
    "backbone_info",
    "train_trial",
]


def __getattr__(name: str) -> Any:
    if name == "train_trial":
        from trainer.train import train_trial

        return train_trial
    raise AttributeError(name)
