"""The coordinator's records of a run: its settings, each running trial, what a new trial
starts from (``inherit``), whether it is surplus, and the acts that carry out the policies'
decisions (``act_on_screen``), shared with the replays in ``bench/``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.engine.pool import Worker
from search.policy import pruning
from storage.optuna_internals import (
    enqueued_params,
    frozen_enqueued_params,
    study_storage,
    trial_id,
)
from storage.records import COSTS, FINISHED, fold_results, queued_first, reuse_folds
from trainer.config import TrialConfig
from trainer.errors import FatalError
from trainer.records import FoldResult, TrialResult

log = logging.getLogger(__name__)


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


class SearchCutoff:
    """When the search stops starting trials: ``--timeout`` after this run began, or the
    search's share of ``--budget`` spent (``RunSettings.search_left``)."""

    def __init__(self, run: RunSettings) -> None:
        self.run = run
        self.started = time.monotonic()
        self._said_timeout = False

    def time_left(self) -> bool:
        timeout = self.run.timeout
        if timeout is not None and time.monotonic() - self.started >= timeout:
            if not self._said_timeout:
                self._said_timeout = True
                log.info(
                    "--timeout %g s reached: no new trial starts (running ones finish); re-run "
                    "the same command to go on",
                    timeout,
                )
            return False
        return self.run.search_left is None or self.run.search_left() > 0

    def budget_spent(self, trials: Sequence[FrozenTrial]) -> bool:
        """The search's share of --budget is over and some trial has finished a fold (the final
        model can train on its configuration)."""
        if self.run.search_left is None or self.run.search_left() > 0:
            return False
        return any(t.state in FINISHED and "fold_scores" in t.user_attrs for t in trials)


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
    cost: float | None = None  # the cost objective's value, once the worker measured it
    curve: list[float] = field(default_factory=list)  # this fold's scores so far
    curve_fold: int = -1


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


def counts(trials: list[FrozenTrial]) -> tuple[int, list[int]]:
    """The number of finished trials and the numbers of the running ones."""
    finished, running = 0, []
    for t in trials:
        if t.state in FINISHED:
            finished += 1
        elif t.state == TrialState.RUNNING:
            running.append(t.number)
    return finished, running


def is_surplus(trials: list[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial ``number`` (running) is one too many for a study of ``n_trials``: another
    coordinator filled the study between our count and our ask.

    Every coordinator ranks the running trials by number and keeps the lowest ones that fit, so
    exactly the surplus trials are abandoned, whoever looks."""
    finished, running = counts(trials)
    room = n_trials - finished
    return number not in sorted(running)[: max(room, 0)]


def inherit(
    study: optuna.Study, trial: optuna.Trial, metric: str, epochs: int
) -> tuple[list[FoldResult], str]:
    """The folds a new trial re-uses: a retry those its failed predecessor finished, a trial
    promoted by the screen its screened trial's first fold (both shown on the trial again).

    Returns those folds and a phrase for the log saying where they come from."""
    retry_of = trial.user_attrs.get("retry_of")
    source = retry_of if retry_of is not None else trial.user_attrs.get(pruning.PROMOTED_FROM)
    if source is None:
        return [], ""
    previous = study.get_trials(deepcopy=False)[int(source)]
    completed = fold_results(previous)
    reuse_folds(trial, completed, metric, epochs)
    for attr in COSTS.values():  # the same architecture's cost, measured again or not
        if attr in previous.user_attrs:
            trial.set_user_attr(attr, previous.user_attrs[attr])
    how = f"retry of trial {source}" if retry_of is not None else f"promoted from trial {source}"
    if not completed:
        return completed, how
    folds = [str(r.fold) for r in completed]
    which = ("its finished fold " if len(folds) == 1 else "its finished folds ") + ", ".join(folds)
    return completed, f"{how}, re-using {which}"


def leave_out(unavailable: dict[str, int], running: Running, backbones: Sequence[str]) -> None:
    """Record that ``running``'s backbone could not load its pretrained weights (``unavailable``:
    backbone -> the trial that found out, which the sampler no longer draws); stop the run when no
    backbone is left."""
    backbone = running.config.backbone
    if backbone in unavailable:
        return
    unavailable[backbone] = running.trial.number
    left = [b for b in backbones if b not in unavailable]
    if not left:
        raise FatalError(
            f"the weights of every backbone of this space failed to load (last: {backbone} in "
            f"trial {running.trial.number}); put the files in a folder and re-run the same "
            "command with --weights-dir DIR, or train from scratch under a new --name with "
            "--weights none"
        )
    log.warning(
        "trial %d could not load the %s weights of %s: %s is left out of sampling for the rest "
        "of this run (still sampled: %s)",
        running.trial.number,
        running.config.weights,
        backbone,
        backbone,
        ", ".join(left),
    )


def queued_left_out(
    study: optuna.Study, trial: optuna.Trial, unavailable: dict[str, int]
) -> str | None:
    """Why an enqueued trial (a retry, a promotion) cannot run: its fixed backbone was left out of
    this run by ``leave_out``; None when it can."""
    if not unavailable:
        return None  # one storage read per trial only once a backbone is left out
    fixed = enqueued_params(study_storage(study), trial_id(trial)) or {}
    backbone = str(fixed.get("backbone"))
    if backbone not in unavailable:
        return None
    return (
        f"queued with backbone {backbone}, whose weights could not be loaded in trial "
        f"{unavailable[backbone]}; left out of this run"
    )


def queued_twice(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether ``trial`` is a starting configuration that an earlier trial already is: two
    coordinators that create a study at the same moment both queue the space's starting points
    (each saw an empty study), and the configurations of --warm-start. The lowest number is
    kept, whoever looks."""
    if not queued_first(trial):
        return False
    fixed = enqueued_params(study_storage(study), trial_id(trial))
    return any(
        t.number < trial.number and queued_first(t) and frozen_enqueued_params(t) == fixed
        for t in study.get_trials(deepcopy=False)
    )
