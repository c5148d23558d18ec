"""The sampler behind ``--sampler tpe|random|gp``, seeded per trial.

A sampler seeded once draws one random stream per process. A resumed run (a new process,
the same ``--seed``) would then draw the configurations its predecessor began with again, and
so would every coordinator that joins a shared study, even on the same first trials at once:
the same random start-up trials, trained twice. Instead the random streams are re-seeded
before each trial from ``(--seed, trial number)``. Trial numbers are unique in a study (the
storage hands them out), so every trial draws anew, and a study run by one coordinator from
start to end is exactly as reproducible as before.
"""

from __future__ import annotations

import zlib

import optuna
from optuna.trial import FrozenTrial

from search.cli import UsageError


def trial_seed(seed: int, number: int) -> int:
    """The random seed of trial ``number``'s draws (32 bits)."""
    return zlib.crc32(f"{seed}:{number}".encode())


def tpe_startup_trials(n_trials: int) -> int:
    """TPE's random start-up trials for a study of ``n_trials``: 4 for short studies, at most 6.

    With pruning, random trials are cheap but TPE's guided ones find the top sooner
    (bench/pruner_sweep.py --startup; docs/constants.md).
    """
    return min(6, max(4, n_trials // 4))


class _SeededPerTrial:
    """Mixin for Optuna samplers: re-seed their random streams before each trial."""

    _study_seed: int

    def _streams(self) -> list:
        raise NotImplementedError

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)  # type: ignore[misc]
        value = trial_seed(self._study_seed, trial.number)
        for stream in self._streams():
            stream.rng.seed(value)


class SeededTPESampler(_SeededPerTrial, optuna.samplers.TPESampler):
    def __init__(self, *, seed: int, **kwargs) -> None:
        super().__init__(seed=seed, **kwargs)
        self._study_seed = seed

    def _streams(self) -> list:
        return [self._rng, self._random_sampler._rng]


class SeededRandomSampler(_SeededPerTrial, optuna.samplers.RandomSampler):
    def __init__(self, *, seed: int) -> None:
        super().__init__(seed=seed)
        self._study_seed = seed

    def _streams(self) -> list:
        return [self._rng]


def make_sampler(
    name: str, seed: int, n_trials: int, *, n_startup_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """``--sampler name``'s sampler. ``n_startup_trials`` sets TPE's random start-up trials
    (None: ``tpe_startup_trials(n_trials)``), for a bench to vary; other samplers ignore it."""
    if name == "random":
        return SeededRandomSampler(seed=seed)
    if name == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError("--sampler gp needs PyTorch (pip install torch); use tpe") from None
        # GPSampler draws its random start-up trials through an inner RandomSampler; its own
        # optimisation is seeded once (a resumed GP study may repeat an acquisition search).
        return optuna.samplers.GPSampler(
            seed=seed, independent_sampler=SeededRandomSampler(seed=seed)
        )
    if n_startup_trials is None:
        n_startup_trials = tpe_startup_trials(n_trials)
    return SeededTPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        # Queued trials (the portfolio, --warm-start) count among the start-up trials, as
        # Optuna counts every complete trial.
        n_startup_trials=n_startup_trials,
    )
