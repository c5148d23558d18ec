"""Optimizers a trial can ask for by name, and the one reset used between cross-validation folds.

``Ranger`` (RAdam + Lookahead) is not in Keras, so it lives here; the other choices are Keras'
own. ``make_optimizer`` maps the names in ``trainer.config.OPTIMIZERS`` to instances, and
``reset_optimizer`` returns any of them to its fresh state so one compiled model can be reused
for every fold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

from trainer import backend
from trainer.config import OPTIMIZERS
from trainer.errors import InvalidConfig

__all__ = ["Ranger", "make_optimizer", "reset_optimizer"]


# JAX traces ``ops.cond``'s branches, and a branch that assigns variables inside
# ``stateless_apply`` leaks its tracers; there the two conditional updates are ``where``s over
# every weight (computed each step), elsewhere a real branch (computed every k-th step).
_BRANCH_FREE = keras.backend.backend() == "jax"


def _where(condition: Any, new: Any, old: Any) -> Any:
    if condition is True:
        return new
    return ops.where(condition, ops.convert_to_tensor(new), ops.convert_to_tensor(old))


@keras.saving.register_keras_serializable(package="trainer")
class Ranger(keras.optimizers.Optimizer):
    """RAdam wrapped in Lookahead ("Ranger").

    Inner step, RAdam (Liu et al. 2019, Algorithm 2): Adam moments with bias correction; while
    the length of the approximated simple moving average ``rho_t`` is at most ``sma_threshold``
    the variance of the adaptive rate is intractable, so the step is plain momentum
    ``lr * m_hat``; afterwards it is ``lr * r_t * m_hat * sqrt(1 - beta_2**t) / (sqrt(v_t) + eps)``
    with the rectification term ``r_t``. Epsilon is added to ``sqrt(v_t)`` as in the authors' code
    and in Keras' Adam.

    Outer step, Lookahead (Zhang et al. 2019): slow weights start at the parameters' values
    before the first step; every ``lookahead_k`` steps ``slow += alpha * (fast - slow)`` and the
    fast weights (the model's variables) are set to ``slow``. The RAdam moments are kept.

    Decoupled weight decay (``weight_decay``) is the base class's: Keras multiplies each variable
    by ``1 - lr * weight_decay`` just before ``update_step``. The slow weights are not decayed
    directly.

    Reset semantics: assigning zeros to every state variable, ``iterations`` included (see
    ``reset_optimizer``), makes this optimizer behave exactly like a fresh one. The slow weights
    are re-taken from the variables' current values at the first step after such a reset
    (whenever ``iterations == 0`` at the start of ``apply``, before clipping, decay and the
    update), not at ``build`` time only; this runs as a graph-safe ``ops.cond`` (a ``where`` on
    JAX) so it also holds inside ``tf.function``, with ``jit_compile`` and under ``jax.jit``.
    """

    def __init__(
        self,
        *,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
        beta_1: float = 0.95,
        beta_2: float = 0.999,
        epsilon: float = 1e-5,
        sma_threshold: float = 5.0,
        lookahead_k: int = 6,
        lookahead_alpha: float = 0.5,
        weight_decay: float | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool):
            if not learning_rate > 0:
                raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
            learning_rate = float(learning_rate)  # Keras rejects ints
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        _check_args(
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            sma_threshold=sma_threshold,
            lookahead_k=lookahead_k,
            lookahead_alpha=lookahead_alpha,
            weight_decay=weight_decay,
        )
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.sma_threshold = float(sma_threshold)
        self.lookahead_k = int(lookahead_k)
        self.lookahead_alpha = float(lookahead_alpha)
        self._factors: tuple[Any, Any] | None = None  # this step's, while it updates

    def build(self, var_list: Sequence[keras.Variable]) -> None:
        """Create the first and second moments and the slow weights for each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities, self._slow_weights = self.add_optimizer_variables(
            var_list, ["momentum", "velocity", "slow"]
        )
        # For an eager ``apply`` that builds us right before the first step. Keras' fit builds us
        # inside the first trace of its train function, where this assign is dropped; the
        # snapshot in ``apply`` (traced again once built) is what holds there.
        for slow, variable in zip(self._slow_weights, var_list, strict=True):
            if slow is not None:  # a copy: on JAX the two must not share a buffer (donation)
                self.assign(slow, ops.copy(ops.convert_to_tensor(variable)))

    def apply(
        self, grads: Sequence[Any], trainable_variables: Sequence[keras.Variable] | None = None
    ) -> None:
        """Take the slow weights from the variables on the first step, then apply as usual."""
        if self.built and len(grads) > 0:
            if _BRANCH_FREE:
                self._take_slow_weights(ops.equal(self.iterations, 0))
            else:
                ops.cond(ops.equal(self.iterations, 0), self._take_slow_weights, lambda: None)
        super().apply(grads, trainable_variables)

    def _take_slow_weights(self, first: Any = True) -> None:
        """The slow weights become the variables (where ``first``)."""
        for slow, variable in zip(self._slow_weights, self._trainable_variables, strict=True):
            if slow is not None:
                self.assign(slow, _where(first, variable, slow))

    def _backend_apply_gradients(self, grads: Sequence[Any], variables: Sequence[Any]) -> None:
        """RAdam's step factors once for every variable, the updates, then one Lookahead sync for
        all of them: one branch a step instead of one a variable, which made the traced step
        grow with the model (docs/step_tracing.md). With gradient accumulation each variable
        syncs in its own update, as Keras calls it only on the steps that update."""
        if self.gradient_accumulation_steps:
            super()._backend_apply_gradients(grads, variables)
            return
        next_step = self.iterations + 1
        self._factors = self._step_factors(ops.cast(next_step, "float64"))
        try:
            super()._backend_apply_gradients(grads, variables)
        finally:
            self._factors = None
        pairs = [
            (self._slow_weights[self._get_variable_index(v)], v)
            for g, v in zip(grads, variables, strict=True)
            if g is not None
        ]
        self._sync_every_k([(slow, v) for slow, v in pairs if slow is not None], next_step)

    def _sync_every_k(self, pairs: Sequence[tuple[Any, Any]], step: Any) -> None:
        """``_sync`` on every ``lookahead_k``-th step: a branch, or a ``where`` on JAX."""
        every_k = ops.equal(ops.mod(step, self.lookahead_k), 0)
        if _BRANCH_FREE:
            self._sync(pairs, every_k)
        else:
            ops.cond(every_k, lambda: self._sync(pairs), lambda: None)

    def _sync(self, pairs: Sequence[tuple[Any, Any]], now: Any = True) -> None:
        """Lookahead: each slow weight steps towards its variable, and both become it (where
        ``now``)."""
        for slow, variable in pairs:
            new_slow = ops.add(
                slow, ops.multiply(ops.subtract(variable, slow), self.lookahead_alpha)
            )
            self.assign(slow, _where(now, new_slow, slow))
            self.assign(variable, _where(now, new_slow, variable))

    def update_step(self, gradient: Any, variable: keras.Variable, learning_rate: Any) -> None:
        """One RAdam step on ``variable`` (and, with gradient accumulation, its Lookahead sync
        every ``lookahead_k`` steps)."""
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        slow = self._slow_weights[index]

        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        next_step = self.iterations + 1
        shared = self._factors
        factor, rectified = shared or self._step_factors(ops.cast(next_step, "float64"))

        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        # Rectified: factor = r_t * sqrt(1 - beta_2**t) / (1 - beta_1**t), divided by sqrt(v) + eps.
        # Otherwise: factor = 1 / (1 - beta_1**t), i.e. the bias-corrected momentum m_hat.
        denominator = ops.where(rectified, ops.add(ops.sqrt(v), self.epsilon), 1.0)
        step = ops.divide(ops.multiply(m, ops.cast(factor, dtype)), ops.cast(denominator, dtype))
        self.assign_sub(variable, ops.multiply(lr, step))

        if slow is not None and shared is None:  # else synced in _backend_apply_gradients
            self._sync_every_k([(slow, variable)], next_step)

    def _step_factors(self, t: Any) -> tuple[Any, Any]:
        """Return (step factor, whether the rectified step is used) for step ``t``.

        Scalar math in float64: ``rho_t`` is a difference of two numbers near ``rho_inf`` (~2000
        for ``beta_2 = 0.999``), and in float32 it came out ~0.01 off, enough to move ``r_t``.
        """
        rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0
        log_beta_2 = math.log1p(-(1.0 - self.beta_2))
        one_minus_beta_2_t = ops.negative(ops.expm1(ops.multiply(t, log_beta_2)))
        beta_2_t = ops.exp(ops.multiply(t, log_beta_2))
        rho_t = rho_inf - 2.0 * t * beta_2_t / one_minus_beta_2_t
        # Clamped at 0 so the branch that ``where`` discards (rho_t <= 4) is never NaN.
        r_squared = ops.maximum(
            (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t),
            0.0,
        )
        bias_correction_1 = 1.0 - ops.power(self.beta_1, t)
        rectified = ops.greater(rho_t, self.sma_threshold)
        factor = ops.where(
            rectified,
            ops.sqrt(r_squared) * ops.sqrt(one_minus_beta_2_t) / bias_correction_1,
            1.0 / bias_correction_1,
        )
        return factor, rectified

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "sma_threshold": self.sma_threshold,
                "lookahead_k": self.lookahead_k,
                "lookahead_alpha": self.lookahead_alpha,
            }
        )
        return config


def _check_args(
    *,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    sma_threshold: float,
    lookahead_k: int,
    lookahead_alpha: float,
    weight_decay: float | None,
) -> None:
    """Raise ValueError naming every out-of-range Ranger argument."""
    problems = []
    if not 0.0 <= beta_1 < 1.0:
        problems.append(f"beta_1 must be in [0, 1), got {beta_1}")
    if not 0.0 < beta_2 < 1.0:
        problems.append(f"beta_2 must be in (0, 1), got {beta_2}")
    if not epsilon > 0.0:
        problems.append(f"epsilon must be > 0, got {epsilon}")
    if not sma_threshold >= 4.0:
        problems.append(
            f"sma_threshold must be >= 4 (the rectification needs rho_t > 4), got {sma_threshold}"
        )
    elif 0.0 < beta_2 < 1.0 and not 2.0 / (1.0 - beta_2) - 1.0 > sma_threshold:
        problems.append(
            f"beta_2={beta_2} gives rho_inf={2.0 / (1.0 - beta_2) - 1.0:.3g} <= "
            f"sma_threshold={sma_threshold}, so the adaptive step would never be used; "
            "raise beta_2 or lower sma_threshold"
        )
    if isinstance(lookahead_k, bool) or not isinstance(lookahead_k, int) or lookahead_k < 1:
        problems.append(f"lookahead_k must be an integer >= 1, got {lookahead_k!r}")
    if not 0.0 < lookahead_alpha <= 1.0:
        problems.append(f"lookahead_alpha must be in (0, 1], got {lookahead_alpha}")
    if weight_decay is not None and not weight_decay >= 0.0:
        problems.append(f"weight_decay must be >= 0 or None, got {weight_decay}")
    if problems:
        raise ValueError("Invalid Ranger arguments: " + "; ".join(problems))


def _decay_or_none(weight_decay: float) -> float | None:
    # None skips the base class's decay pass entirely instead of multiplying by 1.
    return weight_decay if weight_decay > 0 else None


_FACTORIES: dict[str, Callable[[float, float], keras.optimizers.Optimizer]] = {
    # Adam has no decoupled decay; the config's weight_decay applies to adamw/lion/ranger only.
    "adam": lambda lr, wd: keras.optimizers.Adam(learning_rate=lr),
    "adamw": lambda lr, wd: keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd),
    # Lion usually wants a 3-10x smaller learning rate; the search space owns that choice.
    "lion": lambda lr, wd: keras.optimizers.Lion(learning_rate=lr, weight_decay=_decay_or_none(wd)),
    "ranger": lambda lr, wd: Ranger(learning_rate=lr, weight_decay=_decay_or_none(wd)),
}


def make_optimizer(
    name: str, learning_rate: float, weight_decay: float
) -> keras.optimizers.Optimizer:
    """Build the optimizer called ``name`` (one of ``trainer.config.OPTIMIZERS``).

    Raises ``InvalidConfig`` for an unknown name or arguments the optimizer rejects.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise InvalidConfig(
            f"optimizer={name!r} is not known; choose one of {', '.join(OPTIMIZERS)}"
        )
    try:
        return factory(float(learning_rate), float(weight_decay))
    except ValueError as exc:
        raise InvalidConfig(f"optimizer={name!r}: {exc}") from exc


DECOUPLED = (
    "adamw",
    "lion",
    "ranger",
)  # the optimizers the configuration's weight decay applies to


def decay_variable(optimizer: keras.optimizers.Optimizer, value: float) -> keras.Variable:
    """Turn a built optimizer's decoupled weight decay into a variable (set to ``value``) that its
    update reads at run time, so one traced step serves any decay (0 decays nothing)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    variable = inner.add_variable(shape=(), initializer="zeros", dtype="float32", name="decay")
    variable.assign(value)
    inner.weight_decay = variable
    return variable


def reset_optimizer(
    optimizer: keras.optimizers.Optimizer, *, learning_rate: float | None = None
) -> None:
    """Return ``optimizer`` to its fresh state between folds, keeping its learning rate.

    Assigns zeros to every state variable (``iterations``, moments, slow weights, gradient
    accumulators, EMA averages) but not to the learning-rate variable, which Keras 3 also lists
    in ``optimizer.variables``: zeroing it would silently stop training. A
    ``LossScaleOptimizer``'s dynamic scale goes back to its ``initial_scale`` (zero would make
    every gradient non-finite). ``learning_rate``, if given, is assigned afterwards, e.g. to undo
    a callback that lowered it during the previous fold.
    """
    inner = optimizer
    restore: dict[int, float] = {}
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = optimizer.inner_optimizer
        if optimizer.built:
            restore[id(optimizer.dynamic_scale)] = float(optimizer.initial_scale)
    lr = inner.learning_rate  # the variable itself, unless it is a schedule or a callable
    # Neither the rate nor a run-time weight decay (``decay_variable``) is state to zero.
    keep = {id(v) for v in (lr, inner.weight_decay) if isinstance(v, keras.Variable)}
    for variable in optimizer.variables:
        if id(variable) in keep:
            continue
        fill = restore.get(id(variable))
        zeros = keras.ops.zeros_like(variable.value)
        value = zeros if fill is None else zeros + keras.ops.cast(fill, variable.dtype)
        if backend.TF:  # the tf.Variable itself: a third of Keras's assign cost per call
            variable.value.assign(value)
        else:
            variable.assign(value)
    if learning_rate is not None:
        inner.learning_rate = float(learning_rate)
