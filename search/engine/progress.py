"""Live view: one updating status line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from trainer.config import TrialConfig

log = logging.getLogger(__name__)
# A total this large means no count ends the study (--budget does): show no "/total".
UNCOUNTED = 10_000


class Progress:
    """Tracks trial / fold / epoch and the best value so far; renders or logs it."""

    def __init__(
        self,
        total: int,
        *,
        interactive: bool,
        stream: TextIO | None = None,
        done: int = 0,
        best: tuple[int, float] | None = None,
    ) -> None:
        self.total = total
        self.done = done
        self.interactive = interactive
        self.stream = stream or sys.stderr
        self.best = best  # (trial number, value): a resumed study starts from its best
        self.state: dict[int, str] = {}
        self.started = time.monotonic()
        self._width = 0

    def _render(self) -> None:
        if not self.interactive:
            return
        best = f"best {self.best[1]:.4f} (#{self.best[0]})" if self.best else "best -"
        running = " | ".join(f"#{n} {s}" for n, s in sorted(self.state.items()))
        elapsed = time.monotonic() - self.started
        count = f"{self.done}/{self.total}" if self.total < UNCOUNTED else str(self.done)
        line = f"[{elapsed:6.0f}s] {count} finished, {best}"
        line = (f"{line} | {running}" if running else line)[:160]
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def _log(self, message: str, *args: object) -> None:
        if self.interactive:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        log.info(message, *args)
        self._render()

    def trial_started(self, number: int, config: TrialConfig, device: str, origin: str) -> None:
        """``origin`` says where re-used folds come from ("" for a fresh trial)."""
        self.state[number] = "starting"
        self._log(
            "trial %d on %s: %s weights %s, %s lr=%.2g, augment %s, batch %d%s",
            number,
            device,
            config.backbone,
            config.weights,
            config.optimizer,
            config.learning_rate,
            config.augment,
            config.batch_size,
            f"; {origin}" if origin else "",
        )

    def epoch(self, number: int, fold: int, epoch: int, value: float) -> None:
        self.state[number] = f"fold {fold} epoch {epoch} {value:.3f}"
        log.debug("trial %d fold %d epoch %d: %.4f", number, fold, epoch, value)
        self._render()

    def fold(self, number: int, fold: int, score: float) -> None:
        self._log("trial %d fold %d done: %.4f", number, fold, score)

    def trial_finished(self, number: int, state: str, value: float | None, detail: str) -> None:
        """``state``: complete, pruned, screened or failed; ``detail`` says why, with scores."""
        self.state.pop(number, None)
        if state in ("complete", "pruned", "screened"):
            self.done += 1
        if value is not None and (self.best is None or value > self.best[1]):
            self.best = (number, value)
        shown = f" {value:.4f}" if value is not None else ""
        self._log("trial %d %s%s%s", number, state, shown, f": {detail}" if detail else "")

    def close(self) -> None:
        if self.interactive and self._width:
            self.stream.write("\n")
            self.stream.flush()
