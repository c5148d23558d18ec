"""Injection points into a running trial, for tests and fault drills (no TensorFlow here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TrainHooks:
    """``before_epoch(fold, epoch)`` callables run before every epoch; they may raise.
    ``after_build(measure)`` callables run once the trial's model is built, before its first
    epoch, with ``measure(cost) -> float``: the model's ``latency`` (median single-image
    inference milliseconds) or ``params`` (the worker sends a cost objective's value this way)."""

    before_epoch: list[Callable[[int, int], None]] = field(default_factory=list)
    after_build: list[Callable[[Callable[[str], float]], None]] = field(default_factory=list)
