"""The coordinator: owns the study (ask/tell) and keeps one long-lived worker per device busy.

It reports every epoch a worker streams back to the trial, asks the pruner, and answers with a
decision the worker obeys at once. Failures are recorded on the trial they belong to; a worker
that dies is replaced; interrupted configurations are re-run, reusing the folds they finished.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from search.engine.pool import Worker, WorkerPool
from search.engine.progress import Progress
from search.engine.recovery import recover, requeue
from search.engine.signals import StopSignals
from search.engine.trials import (
    Running,
    RunSettings,
    SearchCutoff,
    act_on_screen,
    counts,
    inherit,
    is_surplus,
    leave_out,
    queued_left_out,
    queued_twice,
    stop_detail,
)
from search.policy.pruning import FoldEpochPruner, StopReason
from search.policy.sampling import LeaveOutSampler
from search.reporting.dashboard import DashboardWriter
from spaces.base import Space, StudySettings
from storage.optuna_internals import beat, study_storage, trial_id
from storage.records import (
    COSTS,
    FailureKind,
    cost_name,
    cost_of,
    record_epoch,
    record_failure,
    record_fold,
    tag_started,
)
from trainer.config import Decision
from trainer.errors import FatalError, TrialFailed
from trainer.records import FoldResult, TrialResult

log = logging.getLogger(__name__)


class Coordinator:
    def __init__(
        self,
        study: optuna.Study,
        space: Space,
        settings: StudySettings,
        run: RunSettings,
        *,
        data_path: str,
        worker_envs: list[dict[str, str]],
        pruner: FoldEpochPruner | None,
        class_names: list[str],
        progress: Progress | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        """``pool``: the workers (default: one process per entry of ``worker_envs``);
        ``search.testing.inprocess.InProcessPool`` runs them as threads, for tests."""
        self.study = study
        self.space = space
        self.settings = settings
        self.run_settings = run
        self.pruner = pruner
        self.class_names = class_names
        self.progress = progress or Progress(run.n_trials, interactive=False)
        self.dashboard = DashboardWriter(study, run.metric, class_names, run.artifact_dir)
        self.pool = pool or WorkerPool(worker_envs, data_path, run.trainer)
        self.consecutive_failures = 0
        # SEARCH_HOST names this coordinator where hostnames collide (containers, tests).
        self.host = os.environ.get("SEARCH_HOST") or socket.gethostname()
        self.clock = SearchCutoff(run)
        self.cost = cost_name(study)  # the cost objective beside the score, if any
        self.told: dict[str, int] = {"complete": 0, "pruned": 0, "failed": 0}
        self._last_maintenance = time.monotonic()
        # Backbones whose pretrained weights failed to load in this run (-> the trial that
        # found out): the sampler no longer draws them.
        self.unavailable: dict[str, int] = {}
        self.study.sampler = LeaveOutSampler(
            study.sampler, "backbone", self.unavailable, seed=settings.seed
        )

    # ---------------------------------------------------------------- lifecycle
    def run(self) -> dict[str, int]:
        """Search until the study holds ``n_trials`` finished trials (or time/failures run out)."""
        recover(self.study, self.host)
        requeue(self.study)
        self._last_maintenance = time.monotonic()
        if self._want_more():  # a full study starts no worker (nor TensorFlow in one)
            self.pool.start()
        try:
            with StopSignals() as signals:
                self._loop(signals)
        finally:
            self.pool.shutdown()
            self.progress.close()
        return self.told

    def _loop(self, signals: StopSignals) -> None:
        try:
            while True:
                if signals.received is not None:
                    raise KeyboardInterrupt(signals.received)
                self._heartbeat()
                self._maintenance()
                self._dispatch()
                busy = [w for w in self.pool.workers if w.trial is not None]
                if not busy and not self._want_more():
                    return
                self._poll(timeout=1.0)
        except KeyboardInterrupt:
            self._fail_running(
                FailureKind.INTERRUPTED,
                f"stopped by {signals.received or 'Ctrl-C'}; re-run the same command to resume",
            )
            raise
        except BaseException:
            self._fail_running(FailureKind.INTERRUPTED, "the coordinator stopped on an error")
            raise

    # ---------------------------------------------------------------- scheduling
    def _want_more(self) -> bool:
        if not self.clock.time_left():
            return False
        finished, running = counts(self.study.get_trials(deepcopy=False))
        return finished + len(running) < self.run_settings.n_trials

    def _dispatch(self) -> None:
        for worker in self.pool.workers:
            if worker.ready and worker.trial is None and self._want_more():
                self._start_trial(worker)

    def _start_trial(self, worker: Worker) -> None:
        with warnings.catch_warnings():
            # We beat the heartbeat ourselves (see _heartbeat); Optuna assumes optimize() does.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        if self._surplus(trial):
            return
        reason = queued_left_out(self.study, trial, self.unavailable)
        if reason is not None:
            self._fail(trial, FailureKind.WEIGHTS_UNAVAILABLE, reason)
            return
        try:
            config = self.space.sample(trial, self.settings)
        except TrialFailed as exc:
            self._fail(trial, FailureKind.INVALID_CONFIG, str(exc))
            return
        completed, origin = inherit(
            self.study, trial, self.run_settings.metric, self.settings.epochs
        )
        attrs = {
            "config": config.to_dict(),
            "worker": worker.index,
            "device": worker.device,
            "host": self.host,
            "coordinator_pid": os.getpid(),
            "worker_pid": worker.pid,
            "seed": config.seed,
            "weights": config.weights,
            "backend": config.backend,
        }
        tag_started(study_storage(self.study), trial_id(trial), attrs)
        running = Running(trial, config, worker, time.monotonic(), last_beat=time.monotonic())
        if completed:  # a retry or promotion: the architecture's cost came with its folds
            running.cost = cost_of(trial, self.cost)
        for result in completed:
            running.scores[result.fold] = result.score(self.run_settings.metric)
        worker.trial = running
        self._beat(trial_id(trial))
        self.progress.trial_started(trial.number, config, worker.device, origin)
        self._send(
            worker,
            {
                "type": "run",
                "trial": trial.number,
                "config": config.to_dict(),
                "monitor": self.run_settings.metric,
                "completed": [r.to_dict() for r in completed],
                "cost": self.cost,
            },
        )

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Give back a trial asked when the study was already full (``is_surplus``), or a
        starting configuration another coordinator queued too (``queued_twice``)."""
        trials = self.study.get_trials(deepcopy=False)
        if is_surplus(trials, trial.number, self.run_settings.n_trials):
            why = "the study was already full when this trial started"
        elif queued_twice(self.study, trial):
            why = "a starting configuration queued twice (two coordinators created the study)"
        else:
            return False
        record_failure(study_storage(self.study), trial_id(trial), FailureKind.SURPLUS, why)
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return True

    def _beat(self, trial_id: int) -> None:
        beat(study_storage(self.study), trial_id)

    def _maintenance(self) -> None:
        """Every heartbeat interval: fail trials of dead coordinators and enforce timeouts."""
        now = time.monotonic()
        limit = self.run_settings.trial_timeout
        for w in list(self.pool.workers):
            r = w.trial
            if r is not None and limit is not None and now - r.started > limit:
                self._timeout(w, r)
        if now - self._last_maintenance < self.run_settings.heartbeat_seconds:
            return
        self._last_maintenance = now
        failed = recover(self.study, self.host)
        if failed:
            requeue(self.study, failed)

    def _timeout(self, worker: Worker, running: Running) -> None:
        worker.trial = None
        seconds = self.run_settings.trial_timeout
        log.warning(
            "trial %d ran past --trial-timeout %ss; killing worker %d",
            running.trial.number,
            seconds,
            worker.index,
        )
        worker.process.kill()
        self._worker_died(worker)  # no trial attached any more: only replaces the worker
        self._fail(
            running.trial,
            FailureKind.TIMEOUT,
            f"ran longer than --trial-timeout {seconds}s "
            f"(fold {max(running.scores, default=-1) + 1}); the worker was killed",
        )

    def _heartbeat(self) -> None:
        now = time.monotonic()
        for w in self.pool.workers:
            r = w.trial
            if r is not None and now - r.last_beat >= self.run_settings.heartbeat_seconds / 2:
                self._beat(trial_id(r.trial))
                r.last_beat = now

    # ---------------------------------------------------------------- messages
    def _poll(self, timeout: float) -> None:
        for worker, message in self.pool.wait(timeout):
            if message is None:
                self._worker_died(worker)
            elif worker in self.pool.workers:
                self._handle(worker, message)

    def _handle(self, worker: Worker, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ready":
            worker.ready, worker.device = True, message.get("device", "?")
            log.debug("worker %d ready on %s", worker.index, worker.device)
            return
        running = worker.trial
        if running is None or message.get("trial") != running.trial.number:
            return
        try:
            self._dispatch_message(worker, running, kind, message)
        except UpdateFinishedTrialError:
            # Another coordinator failed this trial (our heartbeat looked stale to it): its
            # configuration is being re-run there, so drop ours.
            log.warning(
                "trial %d was finished by another coordinator; dropping its result",
                running.trial.number,
            )
            if worker.trial is running:
                worker.trial = None
                self._send(worker, {"type": "decision", "decision": Decision.STOP.value})

    def _dispatch_message(
        self, worker: Worker, running: Running, kind: str, message: dict[str, Any]
    ) -> None:
        if kind == "cost":
            running.cost = float(message["value"])
            running.trial.set_user_attr(COSTS[message["cost"]], running.cost)
        elif kind == "epoch":
            self._send(worker, {"type": "decision", "decision": self._on_epoch(running, message)})
        elif kind == "fold":
            self._send(worker, {"type": "decision", "decision": self._on_fold(running, message)})
        elif kind == "done":
            worker.trial = None
            self._finish(running, TrialResult.from_dict(message["result"]))
        elif kind == "failed":
            worker.trial = None
            self._fail(running.trial, message["kind"], message["reason"], running)
            if message["kind"] == FailureKind.WEIGHTS_UNAVAILABLE:
                self._leave_out(running)

    def _on_epoch(self, running: Running, message: dict[str, Any]) -> str:
        fold, epoch = int(message["fold"]), int(message["epoch"])
        value = float(message["metrics"][self.run_settings.metric])
        trial = running.trial
        if math.isfinite(value):
            record_epoch(trial, fold * self.settings.epochs + epoch, value)
        if fold != running.curve_fold:
            running.curve_fold, running.curve = fold, []
        running.curve.append(value if math.isfinite(value) else -math.inf)
        self.progress.epoch(trial.number, fold, epoch, value)
        if self._cost_missing(running):  # fails in _finish with the reason, not after all folds
            return Decision.STOP.value
        if self.clock.budget_spent(self.study.get_trials(deepcopy=False)):
            running.pruned_at = f"fold {fold} epoch {epoch} ({StopReason.BUDGET})"
            return Decision.STOP.value
        if self.pruner is not None and self._should_prune(running, fold, epoch):
            running.pruned_at = f"fold {fold} epoch {epoch} ({StopReason.EPOCH_LEVEL})"
            return Decision.STOP.value
        return Decision.CONTINUE.value

    def _cost_missing(self, running: Running) -> bool:
        """A cost study's trial whose trainer measured no (finite) cost before its epochs."""
        return self.cost is not None and (running.cost is None or not math.isfinite(running.cost))

    def _should_prune(self, running: Running, fold: int, epoch: int) -> bool:
        """The pruner's decision after an epoch: ``Trial.should_prune``, which Optuna refuses
        in a multi-objective study, where the pruner compares costs itself."""
        assert self.pruner is not None
        if self.cost is None:
            return running.trial.should_prune()
        return self.pruner.prune_costed(self.study, fold, epoch, running.curve, running.cost)

    def _on_fold(self, running: Running, message: dict[str, Any]) -> str:
        result = FoldResult.from_dict(message["result"])
        trial = running.trial
        running.scores[result.fold] = result.score(self.run_settings.metric)
        scores = [running.scores[k] for k in sorted(running.scores)]
        record_fold(trial, result, scores)
        self.progress.fold(trial.number, result.fold, scores[-1])
        screen = self.pruner.screen_fold(self.study, trial, scores) if self.pruner else None
        if screen is not None and act_on_screen(self.study, trial, screen):
            running.pruned_at = f"after fold {result.fold} ({StopReason.SCREENING})"
            running.screened = True
            return Decision.STOP.value
        if self.pruner is not None and self.pruner.prune_fold(self.study, scores, running.cost):
            running.pruned_at = f"after fold {result.fold} ({StopReason.FOLD_LEVEL})"
            return Decision.STOP.value
        return Decision.CONTINUE.value

    def _finish(self, running: Running, result: TrialResult) -> None:
        trial = running.trial
        trial.set_user_attr("seconds", round(time.monotonic() - running.started, 3))
        trial.set_user_attr("timings", {k: round(v, 3) for k, v in result.timings.items()})
        self.dashboard.trial_done(trial, [f for f in result.folds if not f.stopped])
        if self._cost_missing(running):
            self._fail(
                trial,
                FailureKind.FAILED,
                f"the trainer sent no finite {self.cost} for --objective accuracy,{self.cost} "
                f"(got {running.cost}): a MODULE:FUNCTION trainer must call each "
                "hooks.after_build callable with a measure(cost) function "
                "(trainer.hooks.TrainHooks)",
            )
            return
        self.consecutive_failures = 0
        if running.pruned_at or result.stopped:
            trial.set_user_attr("pruned_at", running.pruned_at or result.stop_reason)
            self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            self.told["pruned"] += 1
            self.progress.trial_finished(
                trial.number,
                "screened" if running.screened else "pruned",
                None,
                stop_detail(running, result, self.run_settings.metric),
            )
            return
        value = result.mean_score(self.run_settings.metric)
        values = value if running.cost is None else [value, running.cost]
        self.study.tell(trial, values, skip_if_finished=True)
        self.told["complete"] += 1
        self.progress.trial_finished(trial.number, "complete", value, "")
        self.dashboard.study_changed()

    def _fail(
        self, trial: optuna.Trial, kind: str, reason: str, running: Running | None = None
    ) -> None:
        try:
            record_failure(study_storage(self.study), trial_id(trial), kind, reason)
        except UpdateFinishedTrialError:
            log.warning(
                "trial %d (%s) was already finished by another coordinator", trial.number, kind
            )
            return
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        self.told["failed"] += 1
        self.progress.trial_finished(trial.number, "failed", None, f"{kind}: {reason}")
        self.consecutive_failures += 1
        requeue(self.study, [trial.number])
        limit = self.run_settings.max_consecutive_failures
        if self.consecutive_failures >= limit:
            raise FatalError(
                f"{self.consecutive_failures} trials failed in a row (last: trial {trial.number}, "
                f"{kind}: {reason[:300]}); stopping the study. Fix the cause and re-run the same "
                "command to resume"
            )

    def _leave_out(self, running: Running) -> None:
        """Stop sampling a backbone whose pretrained weights could not be loaded."""
        leave_out(self.unavailable, running, self.space.backbones)

    def _send(self, worker: Worker, message: dict[str, Any]) -> None:
        if not self.pool.send(worker, message):
            self._worker_died(worker)

    def _worker_died(self, worker: Worker) -> None:
        running = worker.trial
        how = self.pool.replace(worker)
        if how is None:
            return  # already replaced
        worker.trial = None
        log.warning(
            "worker %d (pid %s) died with %s; started a replacement", worker.index, worker.pid, how
        )
        if running is not None:
            self._fail(
                running.trial,
                FailureKind.WORKER_DIED,
                f"worker {worker.index} (pid {worker.pid}, {worker.device}) died with {how}",
                running,
            )

    def _fail_running(self, kind: str, reason: str) -> None:
        for w in self.pool.workers:
            if w.trial is not None:
                trial = w.trial.trial
                w.trial = None
                try:
                    record_failure(study_storage(self.study), trial_id(trial), kind, reason)
                    self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                except Exception as exc:  # storage gone: heartbeat expiry will fail it later
                    log.warning("could not mark trial %d failed: %s", trial.number, exc)
