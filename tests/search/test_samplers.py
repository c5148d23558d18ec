"""Samplers draw from (seed, trial number): a resumed or second coordinator draws anew."""

from __future__ import annotations

import optuna
import pytest

from search.policy.samplers import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return x + (kind == "b")


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_a_new_process_on_the_same_study_draws_what_one_process_would_have(name: str) -> None:
    whole = optuna.create_study(direction="maximize", sampler=make_sampler(name, 3, 20))
    whole.optimize(_objective, n_trials=6)
    # A "resumed" study: the first 3 trials are there, the sampler is new with the same seed.
    resumed = optuna.create_study(direction="maximize", sampler=make_sampler(name, 3, 20))
    for t in whole.trials[:3]:
        resumed.add_trial(t)
    resumed.optimize(_objective, n_trials=3)
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    params = [tuple(sorted(t.params.items())) for t in resumed.trials]
    assert len(set(params)) == 6  # nothing drawn twice
    other = optuna.create_study(direction="maximize", sampler=make_sampler(name, 4, 20))
    other.optimize(_objective, n_trials=3)
    assert [t.params for t in other.trials] != [t.params for t in whole.trials[:3]]


def test_the_cli_sampler_random_draws_what_the_random_sampler_draws(tmp_path) -> None:
    """--sampler random reaches the study: its trials are exactly a seeded RandomSampler's
    draws over the space, which TPE's guided trials are not."""
    from spaces import SPACES
    from spaces.base import StudySettings
    from tests.search.cli import FAKE_QUICK, load, run_cli

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    n = 10
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", str(n), "--pruner", "none",
        "--sampler", "random", "--workers", "1", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    drawn = [t.params for t in load(url, "quick").trials]
    space = SPACES["quick"]
    settings = StudySettings(epochs=space.epochs, weights="none", seed=0, image_size=32)

    def replay(name: str) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=make_sampler(name, 0, n))
        for params in space.starting_params(settings):
            study.enqueue_trial(params)
        for _ in range(n):
            trial = study.ask()
            space.sample(trial, settings)
            study.tell(trial, 0.5)
        return [t.params for t in study.trials]

    assert drawn == replay("random")
    assert drawn != replay("tpe")
