"""The coordinator in-process: real scheduling, screen, retries and records, with the fake trainer
in worker threads (search.testing.inprocess). The CLI tests prove the real processes."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from search.data import load_dataset
from search.engine.coordinator import Coordinator
from search.engine.progress import Progress
from search.engine.trials import RunSettings, is_surplus
from search.engine.worker import write_worker_data
from search.policy import pruning
from search.policy.pruning import make_pruner
from search.policy.samplers import make_sampler
from search.testing.inprocess import InProcessPool
from spaces import SPACES
from spaces.base import StudySettings
from trainer.errors import FatalError
from trainer.folds import make_folds

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS, FOLDS = 4, 3


GOOD = {
    "backbone": "small_cnn",
    "augment": "light",
    "optimizer": "adamw",
    "learning_rate": 2e-3,
    "weight_decay": 1e-4,
    "l2": 1e-6,
    "dropout": 0.2,
    "head_width": 0,
    "batch_size": 32,
    "label_smoothing": 0.0,
    "class_weighting": False,
}
OOM, NAN = 0.00666, 0.00777  # the fake trainer's fault drills (learning rates)


def _data(folds: int):
    import shutil

    data = load_dataset("demo", image_size=32)
    folder, path = write_worker_data(data, make_folds(data.labels, folds, seed=0))
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def data_path() -> str:
    yield from _data(FOLDS)


@pytest.fixture(scope="module")
def five_folds() -> str:
    yield from _data(5)


def _queued(*params: dict, n_trials: int = 8) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", 0, n_trials))
    for p in params:
        study.enqueue_trial(p)
    return study


def _run(data_path: str, n_trials: int, *, workers: int = 1, pruner: str = "default",
         study: optuna.Study | None = None, n_folds: int = FOLDS,
         **run) -> tuple[optuna.Study, dict[str, int]]:  # fmt: skip
    space = SPACES["quick"]
    settings = StudySettings(epochs=EPOCHS, weights="none", seed=0, image_size=32)
    if study is None:
        study = _queued(*space.starting_params(settings), n_trials=n_trials)
    envs = [{} for _ in range(workers)]
    pool = InProcessPool(envs, data_path, "fake")
    coordinator = Coordinator(
        study,
        space,
        settings,
        RunSettings(n_trials=n_trials, trainer="fake", **run),
        data_path=data_path,
        worker_envs=envs,
        pruner=make_pruner(
            pruner, epochs_per_fold=EPOCHS, n_folds=n_folds, n_trials=n_trials, workers=workers
        ),
        class_names=["a"] * 8,
        progress=Progress(n_trials, interactive=False),
        pool=pool,
    )
    return study, coordinator.run()


def test_reaches_exactly_n_finished_trials_with_two_workers(data_path: str, monkeypatch) -> None:
    # Epochs that take a moment: an instant fake let the first worker ready finish all 8 trials
    # before the second said ready (seen once in a full run).
    monkeypatch.setenv("FAKE_EPOCH_SECONDS", "0.05")
    study, told = _run(data_path, 8, workers=2, pruner="none")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 8 and TrialState.RUNNING not in states
    assert told == {"complete": 8, "pruned": 0, "failed": 0}
    assert {t.user_attrs["worker"] for t in study.trials} == {0, 1}
    for t in study.trials:  # the records the coordinator writes
        assert len(t.user_attrs["fold_scores"]) == FOLDS
        assert t.value == pytest.approx(np.mean(t.user_attrs["fold_scores"]))
        assert len(t.intermediate_values) == FOLDS * EPOCHS


def test_the_screen_stops_the_first_trials_and_its_promotion_reuses_fold_0(data_path) -> None:
    study, _ = _run(data_path, 12)
    trials = study.trials
    screened = [t for t in trials if t.user_attrs.get(pruning.SCREENED)]
    assert len(screened) >= 3
    assert all(t.state == TrialState.PRUNED for t in screened)
    (promoted,) = [t for t in trials if pruning.PROMOTED_FROM in t.user_attrs]
    source = trials[promoted.user_attrs[pruning.PROMOTED_FROM]]
    assert source.user_attrs.get(pruning.SCREENED) and promoted.params == source.params
    assert promoted.user_attrs["reused_folds"] == [0]
    assert promoted.user_attrs["fold_0"] == source.user_attrs["fold_0"]
    assert "screening" in source.user_attrs["pruned_at"]


def test_an_interrupted_trial_is_retried_reusing_its_finished_folds(data_path) -> None:
    """A trial left FAIL (interrupted) with fold 0 done, as a killed coordinator leaves one."""
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", 0, 4))
    first, _ = _run(data_path, 1, pruner="none", study=study)
    (done,) = first.trials
    fold_0 = dict(done.user_attrs["fold_0"])
    study.add_trial(
        optuna.trial.create_trial(
            params=done.params,
            distributions=done.distributions,
            user_attrs={
                "config": done.user_attrs["config"],
                "fold_0": fold_0,
                "fold_scores": done.user_attrs["fold_scores"][:1],
                "failure_kind": "interrupted",
            },
            state=TrialState.FAIL,
        )
    )
    ghost = study.trials[-1]
    _run(data_path, 3, pruner="none", study=study)
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == ghost.number]
    assert retry.state == TrialState.COMPLETE and retry.params == done.params
    assert retry.user_attrs["reused_folds"] == [0] and retry.user_attrs["fold_0"] == fold_0
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3


def test_timeout_starts_nothing_once_spent(data_path: str) -> None:
    study, told = _run(data_path, 50, pruner="none", timeout=0.0)
    assert told == {"complete": 0, "pruned": 0, "failed": 0}
    # only the queued portfolio, none of it started, and nothing asked of the sampler
    assert [t.state for t in study.trials] == [TrialState.WAITING] * len(study.trials)
    assert len(study.trials) == len(SPACES["quick"].starting_points)


def test_a_pool_of_threads_is_what_the_coordinator_ran(data_path: str, monkeypatch) -> None:
    """No process was started: the coordinator used the injected pool."""
    import multiprocessing

    started = []
    monkeypatch.setattr(
        multiprocessing.context.SpawnProcess, "start", lambda self: started.append(self)
    )
    _run(data_path, 2, pruner="none")
    assert started == []


@pytest.mark.parametrize("pruner", ["fold", "default"])
def test_a_clearly_bad_configuration_is_pruned_before_its_last_fold(five_folds, pruner) -> None:
    bad = {**GOOD, "learning_rate": 3e-4, "augment": "none"}
    study = _queued(GOOD, {**GOOD, "augment": "moderate"}, {**GOOD, "learning_rate": 1e-3}, bad)
    _run(five_folds, 4, pruner=pruner, study=study, n_folds=5)
    trials = study.trials
    assert trials[0].state == TrialState.COMPLETE
    victim = trials[3]
    assert victim.state == TrialState.PRUNED
    assert len(victim.user_attrs.get("fold_scores", [])) < 5
    if pruner == "fold":  # the fold test judges from the first fold
        assert victim.user_attrs["pruned_at"] == "after fold 0 (fold-level)"


def test_out_of_memory_and_nan_fail_only_their_trial_and_are_not_rerun(data_path) -> None:
    study = _queued({**GOOD, "learning_rate": OOM}, GOOD, {**GOOD, "learning_rate": NAN})
    _, told = _run(data_path, 3, pruner="none", study=study)
    kinds = {t.number: t.user_attrs.get("failure_kind") for t in study.trials}
    assert kinds[0] == "out_of_memory" and kinds[2] == "non_finite_loss"
    assert told == {"complete": 3, "pruned": 0, "failed": 2}
    assert not [t for t in study.trials if "retry_of" in t.user_attrs]  # the trial's own fault
    assert "simulated out of memory" in study.trials[0].user_attrs["failure_reason"]


def test_consecutive_failures_stop_the_study_with_a_clear_message(data_path) -> None:
    oom = {**GOOD, "learning_rate": OOM}
    study = _queued(oom, oom, oom)
    with pytest.raises(FatalError, match="3 trials failed in a row.*out_of_memory"):
        _run(data_path, 6, pruner="none", study=study, max_consecutive_failures=3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL] * 3


def test_a_success_between_failures_resets_the_count(data_path) -> None:
    oom = {**GOOD, "learning_rate": OOM}
    study = _queued(oom, oom, GOOD, oom, oom)
    _, told = _run(data_path, 5, pruner="none", study=study, max_consecutive_failures=3)
    assert told["failed"] == 4 and told["complete"] >= 1


def test_the_screen_is_off_when_workers_leave_no_room_for_the_promotion(data_path) -> None:
    study, _ = _run(data_path, 10, workers=2)
    assert len(study.trials) == 10
    assert not any(t.user_attrs.get(pruning.SCREENED) for t in study.trials)


def _trial(number: int, state: TrialState) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=state, value=0.5 if state.is_finished() else None)


def test_only_the_running_trials_that_do_not_fit_are_surplus() -> None:
    """Two coordinators on a study of 4 with 2 finished each asked a trial at once (3 and 4):
    both keep 2 and 3 and give back 4, whoever looks."""
    states = [TrialState.COMPLETE, TrialState.PRUNED] + [TrialState.RUNNING] * 3
    trials = []
    for number, state in enumerate(states):
        t = _trial(number, state)
        t.number = number
        trials.append(t)
    assert [is_surplus(trials, n, 4) for n in (2, 3, 4)] == [False, False, True]
    assert is_surplus(trials, 2, 2)  # a full study: every running trial is surplus
    assert not is_surplus(trials, 4, 10)
    trials[0].state = TrialState.FAIL  # a failed trial does not count as finished
    assert not is_surplus(trials, 4, 4)


def test_a_starting_point_queued_by_two_coordinators_at_once_runs_once(data_path) -> None:
    """Two coordinators creating one study at the same moment both see it empty and both queue
    the space's starting configuration; the later copy is given back, not trained again."""
    from storage.records import STARTING_POINT

    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", 0, 3))
    for _ in range(2):  # what the two coordinators' enqueue_trial calls left
        study.enqueue_trial(GOOD, user_attrs={STARTING_POINT: True})
    _, told = _run(data_path, 3, pruner="none", study=study)
    first, second = study.trials[:2]
    assert first.state == TrialState.COMPLETE and first.params == GOOD
    assert second.state == TrialState.FAIL and second.user_attrs["failure_kind"] == "surplus"
    assert "queued twice" in second.user_attrs["failure_reason"]
    assert told["complete"] == 3 and sum(t.params == GOOD for t in study.trials) == 1
