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
from search.engine.trials import RunSettings
from search.engine.worker import write_worker_data
from search.policy import pruning
from search.policy.pruning import make_pruner
from search.policy.samplers import make_sampler
from search.testing.inprocess import InProcessPool
from spaces import SPACES
from spaces.base import StudySettings
from trainer.folds import make_folds

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS, FOLDS = 4, 3


@pytest.fixture(scope="module")
def data_path() -> str:
    import shutil

    data = load_dataset("demo", image_size=32)
    folder, path = write_worker_data(data, make_folds(data.labels, FOLDS, seed=0))
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def _run(data_path: str, n_trials: int, *, workers: int = 1, pruner: str = "default",
         study: optuna.Study | None = None, **run) -> tuple[optuna.Study, dict[str, int]]:  # fmt: skip
    space = SPACES["quick"]
    settings = StudySettings(epochs=EPOCHS, weights="none", seed=0, image_size=32)
    if study is None:
        study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", 0, n_trials))
        for params in space.starting_params(settings):
            study.enqueue_trial(params)
    envs = [{} for _ in range(workers)]
    pool = InProcessPool(envs, data_path, "fake")
    coordinator = Coordinator(
        study,
        space,
        settings,
        RunSettings(n_trials=n_trials, trainer="fake", **run),
        data_path=data_path,
        worker_envs=envs,
        pruner=make_pruner(pruner, epochs_per_fold=EPOCHS, n_folds=FOLDS, n_trials=n_trials),
        class_names=["a"] * 8,
        progress=Progress(n_trials, interactive=False),
        pool=pool,
    )
    return study, coordinator.run()


def test_reaches_exactly_n_finished_trials_with_two_workers(data_path: str) -> None:
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
    assert told == {"complete": 0, "pruned": 0, "failed": 0} and not study.trials[1:]


def test_a_pool_of_threads_is_what_the_coordinator_ran(data_path: str, monkeypatch) -> None:
    """No process was started: the coordinator used the injected pool."""
    import multiprocessing

    started = []
    monkeypatch.setattr(
        multiprocessing.context.SpawnProcess, "start", lambda self: started.append(self)
    )
    _run(data_path, 2, pruner="none")
    assert started == []
