"""A sampler wrapper that stops drawing some values of one categorical parameter.

Optuna refuses a categorical parameter whose choices change during a study, so a backbone whose
weights cannot be loaded is not removed from the space; instead the wrapped sampler's draw is
replaced, when it lands on a left-out value, by a seeded uniform draw among the values left.
Everything else (TPE's model, constant liar, start-up trials) is the wrapped sampler's own.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


class LeaveOutSampler(BaseSampler):
    """``base``, except that ``param`` never takes a value in ``left_out`` (read at each draw)."""

    def __init__(self, base: BaseSampler, param: str, left_out: Container[Any], seed: int = 0):
        self.base = base
        self.param = param
        self.left_out = left_out
        self._rng = np.random.default_rng(seed)

    def _keep(self, value: Any, distribution: BaseDistribution) -> Any:
        if value not in self.left_out or not isinstance(distribution, CategoricalDistribution):
            return value
        choices = [c for c in distribution.choices if c not in self.left_out]
        if not choices:
            return value  # nothing left: the caller decides what that means
        return choices[int(self._rng.integers(len(choices)))]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        params = dict(self.base.sample_relative(study, trial, search_space))
        if self.param in params:
            kept = self._keep(params[self.param], search_space[self.param])
            if kept != params[self.param]:
                # The other relative draws were made for the left-out value: let them be drawn
                # again, independently, for the value kept.
                params = {self.param: kept}
        return params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        value = self.base.sample_independent(study, trial, param_name, param_distribution)
        return self._keep(value, param_distribution) if param_name == self.param else value

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng = np.random.default_rng()
