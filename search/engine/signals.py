"""Ctrl-C and SIGTERM: as a flag the coordinator reads between two storage writes, or as a
KeyboardInterrupt where nothing needs protecting (the final model's training)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Self


class _OnStop:
    """While entered (on the main thread), SIGINT and SIGTERM go to ``_handler``; the previous
    handlers come back on exit. Off the main thread (the in-process test pool) nothing is
    installed."""

    def __init__(self) -> None:
        self._previous: dict[signal.Signals, object] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *_: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()


class StopSignals(_OnStop):
    """SIGINT and SIGTERM set ``received`` to the signal's name instead of raising inside a
    storage write."""

    def __init__(self) -> None:
        super().__init__()
        self.received: str | None = None

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name


class InterruptOnStop(_OnStop):
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so the final model's training stops where
    it is and its caller says so. Its writes survive that: Optuna rolls a storage write back, and
    the export's files are written whole and config.json last."""

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
