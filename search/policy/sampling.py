"""A sampler wrapper that stops drawing some values of one categorical parameter.

Optuna refuses a categorical parameter whose choices change during a study, so a backbone whose
weights cannot be loaded is not removed from the space. Instead, when the wrapped sampler's
draw lands on a left-out value, a joint (relative) draw is made again without that parameter,
and the parameter itself is drawn uniformly among the values left, seeded. With nothing left
out every call goes straight to the wrapped sampler, so a study samples exactly as without it.
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
        params = self.base.sample_relative(study, trial, search_space)
        if params.get(self.param) not in self.left_out:
            return params
        # The joint draw landed on a left-out value: draw the other parameters jointly again
        # without it (TPE's groups skip a missing name), and the value itself independently.
        without = {k: v for k, v in search_space.items() if k != self.param}
        return self.base.sample_relative(study, trial, without) if without else {}

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
