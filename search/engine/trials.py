"""The coordinator's records of a run: its settings, each running trial, and the acts that
carry out the policies' decisions (``act_on_screen``), shared with the replays in ``bench/``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import optuna

from search.engine.pool import Worker
from search.policy import pruning
from trainer.config import TrialConfig
from trainer.records import TrialResult


@dataclass(frozen=True)
class RunSettings:
    """How long and how hard to search (the rest of the command line)."""

    n_trials: int
    metric: str = "accuracy"
    timeout: float | None = None
    max_consecutive_failures: int = 5
    trainer: str = "keras"  # "fake" (search/testing/fake.py) or "module:function" (plugins.py)
    heartbeat_seconds: float = 20.0
    trial_timeout: float | None = None
    artifact_dir: str | None = None
    # With --budget: seconds the search may still run (<= 0: start nothing, stop running trials
    # once a trial has completed).
    search_left: Callable[[], float] | None = None


@dataclass
class Running:
    """A trial a worker is training, as the coordinator follows it."""

    trial: optuna.Trial
    config: TrialConfig
    worker: Worker
    started: float
    scores: dict[int, float] = field(default_factory=dict)
    pruned_at: str = ""
    screened: bool = False
    last_beat: float = 0.0


def act_on_screen(
    study: optuna.Study, trial: optuna.Trial, decision: pruning.ScreenDecision
) -> bool:
    """Carry out the screen's decision (the tag, the promotion); whether the trial stops. The
    coordinator's, and the replays' of it (bench/pruner_sweep.py)."""
    if decision.tag is not None:
        trial.set_user_attr(decision.tag, True)
    if decision.promote is not None:
        number, params = decision.promote
        study.enqueue_trial(
            params, user_attrs={pruning.PROMOTED_FROM: number}, skip_if_exists=False
        )
    return decision.stop


def stop_detail(running: Running, result: TrialResult, metric: str) -> str:
    """Why a trial stopped early, with the scores it had, for the log."""
    if running.screened:
        fold = max(running.scores)
        return (
            f"stopped after fold {fold} with {running.scores[fold]:.4f}; once the screen is "
            "full, the screened trial with the best first fold is promoted to finish its folds"
        )
    scores = ", ".join(f"{running.scores[k]:.4f}" for k in sorted(running.scores))
    done = f"fold scores {scores}" if scores else "no fold finished"
    stopped = [f for f in result.folds if f.stopped]
    if stopped and stopped[-1].epochs:
        cut = stopped[-1]
        best = max(getattr(e, metric) for e in cut.epochs)
        done += f"; fold {cut.fold} stopped at epoch {cut.epochs[-1].epoch} with best {best:.4f}"
    return f"{running.pruned_at or result.stop_reason}; {done}"
