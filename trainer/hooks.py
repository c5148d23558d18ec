"""Injection points into a running trial, for tests and fault drills (no TensorFlow here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TrainHooks:
    """``before_epoch(fold, epoch)`` callables run before every epoch; they may raise."""

    before_epoch: list[Callable[[int, int], None]] = field(default_factory=list)
