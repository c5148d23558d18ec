"""Samplers draw from (seed, trial number): a resumed or second coordinator draws anew."""

from __future__ import annotations

import optuna
import pytest

from search.samplers import make_sampler

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
