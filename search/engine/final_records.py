"""What a --budget run writes on its study about the final model and reads back when the same
command runs again: the paired check's evidence (FINAL_CHECK), the model handed over and what it
was asked for (FINAL_RECIPE), and the time spent while it trains (written from a thread)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from search.policy.final import RecipeCheck
from storage.study import FINAL_CHECK, FINAL_RECIPE


def recorded_check(study: optuna.Study | None, trial: int, epochs: int) -> RecipeCheck | None:
    """The paired check an earlier run of this study recorded for ``trial`` at ``epochs``."""
    record = study.user_attrs.get(FINAL_CHECK) if study is not None else None
    if not isinstance(record, dict):
        return None
    if (record.get("trial"), record.get("epochs")) != (trial, epochs):
        return None
    try:
        return RecipeCheck(**record["check"])
    except (TypeError, KeyError):
        return None  # written by another version: run it again


def check_record(trial: int, epochs: int, check: RecipeCheck) -> dict[str, Any]:
    """FINAL_CHECK's value: unrounded, so the verdict read back is the one that was made."""
    return {"trial": trial, "epochs": epochs, "check": dataclasses.asdict(check)}


def model_record(trained: Any, out: Path, config: Any, asked: dict[str, Any]) -> dict[str, Any]:
    """FINAL_RECIPE's value: the model handed over, and ``asked``, what the run was asked for
    (its budget and the flags that choose the model), which ``handed_over`` compares."""
    return {
        "asked": asked,
        **(trained.recipe or {}),
        "epochs": trained.epochs[0],
        "folder": str(out.resolve()),
        "trial": trained.trial,
        "backbone": config.backbone,
        "cv_score": trained.cv_score(),  # as report.md states it, over cv_folds folds
        "cv_folds": len(trained.finished()),
        "image_size": trained.image_size,  # the model's input, not the search's
        "symmetry": config.symmetry,
        "colour": config.colour,
        "trust": json.loads((out / "config.json").read_text()).get("trust"),
    }


def handed_over(
    study: optuna.Study, out: Path, asked: dict[str, Any], best: int | None
) -> dict[str, Any] | None:
    """FINAL_RECIPE when the same --budget command already handed this study's model to ``out``
    and running it again would change nothing: the folder still holds that export, the budget is
    no larger, the other flags that choose the model are the same, and ``best`` (the trial the
    final model would train now) is the trial it trained. Else None: train again."""
    record = study.user_attrs.get(FINAL_RECIPE)
    if not isinstance(record, dict) or not isinstance(record.get("asked"), dict):
        return None  # none, or recorded before what was asked was
    before = dict(record["asked"])
    folder = Path(str(record.get("folder", "")))
    if folder != out.resolve() or best is None or record.get("trial") != best:
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None  # removed, or not a complete export
    if (config.get("study"), config.get("trial")) != (study.study_name, best):
        return None  # another export in the folder since
    same = {k: v for k, v in asked.items() if k != "budget"} == {
        k: v for k, v in before.items() if k != "budget"
    }
    if not same or float(asked["budget"]) > float(before.get("budget", 0.0)):
        return None
    return record


class KeepRecording:
    """While entered, a thread calls ``record`` every ``every`` seconds (the time spent), so a
    run killed while the final model trains, even by SIGKILL, has its time counted on resume."""

    JOIN_SECONDS = 2.0  # a write still running at exit is left to finish on its own (daemon)

    def __init__(self, record: Callable[[], None], every: float) -> None:
        self.record, self.every = record, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="budget-record", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            with contextlib.suppress(Exception):  # the time is a nicety (BudgetClock.record)
                self.record()

    def __enter__(self) -> KeepRecording:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(self.JOIN_SECONDS)
