"""LeaveOutSampler: a study samples exactly as without it until a value is left out, and never
draws a left-out value after."""

from __future__ import annotations

import optuna

from search.policy.sampling import LeaveOutSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    b = trial.suggest_categorical("backbone", ["x", "y", "z"])
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    depth = trial.suggest_int(f"depth_{b}", 0, 3)
    return {"x": 1.0, "y": 0.6, "z": 0.3}[b] - abs(lr - 0.01) + 0.01 * depth


def _tpe(seed: int = 0) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=5
    )


def test_with_nothing_left_out_it_samples_exactly_as_the_wrapped_sampler() -> None:
    plain = optuna.create_study(direction="maximize", sampler=_tpe())
    plain.optimize(_objective, n_trials=25)
    wrapped = optuna.create_study(
        direction="maximize", sampler=LeaveOutSampler(_tpe(), "backbone", set())
    )
    wrapped.optimize(_objective, n_trials=25)
    assert [t.params for t in wrapped.trials] == [t.params for t in plain.trials]


def test_a_left_out_value_is_never_drawn_again() -> None:
    left_out: set[str] = set()
    study = optuna.create_study(
        direction="maximize", sampler=LeaveOutSampler(_tpe(), "backbone", left_out, seed=3)
    )
    study.optimize(_objective, n_trials=15)
    assert any(t.params["backbone"] == "x" for t in study.trials)  # TPE found the best value
    left_out.add("x")  # its weights failed: TPE still favours it, the wrapper must not
    study.optimize(_objective, n_trials=25)
    later = study.trials[15:]
    assert all(t.params["backbone"] != "x" for t in later)
    assert {t.params["backbone"] for t in later} == {"y", "z"}
