"""Ranger against a NumPy transcription of the RAdam and Lookahead papers, plus the factory."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest

from trainer.config import OPTIMIZERS
from trainer.errors import InvalidConfig
from trainer.optimizers import Ranger, make_optimizer, reset_optimizer

STEPS = 20  # rho_t crosses 5 after step 5; with k=6 the slow weights sync at 6, 12 and 18
TOL = {"rtol": 1e-5, "atol": 1e-5}
HYPER = {
    "learning_rate": 0.05,
    "beta_1": 0.95,
    "beta_2": 0.999,
    "epsilon": 1e-5,
    "sma_threshold": 5.0,
    "lookahead_k": 6,
    "lookahead_alpha": 0.5,
}


class ReferenceRanger:
    """RAdam (Liu et al. 2019, Algorithm 2) inside Lookahead (Zhang et al. 2019, Algorithm 1).

    float64 NumPy, one equation per line. Epsilon is added to sqrt(v_t) as in the RAdam authors'
    code (the paper has none). Decoupled weight decay (Loshchilov & Hutter) shrinks the fast
    weights by lr * wd * theta_{t-1} in the same step; the slow weights phi_0 = theta_0.
    """

    def __init__(
        self,
        params: list[np.ndarray],
        *,
        learning_rate: float,
        beta_1: float,
        beta_2: float,
        epsilon: float,
        sma_threshold: float,
        lookahead_k: int,
        lookahead_alpha: float,
        weight_decay: float = 0.0,
    ) -> None:
        self.theta = [np.asarray(p, np.float64).copy() for p in params]
        self.phi = [p.copy() for p in self.theta]
        self.m = [np.zeros_like(p) for p in self.theta]
        self.v = [np.zeros_like(p) for p in self.theta]
        self.lr, self.b1, self.b2, self.eps = learning_rate, beta_1, beta_2, epsilon
        self.threshold, self.wd = sma_threshold, weight_decay
        self.k, self.alpha = lookahead_k, lookahead_alpha
        self.rho_inf = 2.0 / (1.0 - beta_2) - 1.0
        self.t = 0

    def rho(self, t: int) -> float:
        return self.rho_inf - 2.0 * t * self.b2**t / (1.0 - self.b2**t)

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        t = self.t
        rho_t = self.rho(t)
        for i, g in enumerate(grads):
            g = np.asarray(g, np.float64)
            decay = self.lr * self.wd * self.theta[i]
            self.m[i] = self.b1 * self.m[i] + (1.0 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1.0 - self.b2) * g * g
            m_hat = self.m[i] / (1.0 - self.b1**t)
            if rho_t > self.threshold:
                l_t = np.sqrt(1.0 - self.b2**t) / (np.sqrt(self.v[i]) + self.eps)
                r_t = np.sqrt(
                    (rho_t - 4.0)
                    * (rho_t - 2.0)
                    * self.rho_inf
                    / ((self.rho_inf - 4.0) * (self.rho_inf - 2.0) * rho_t)
                )
                self.theta[i] = self.theta[i] - self.lr * r_t * m_hat * l_t - decay
            else:
                self.theta[i] = self.theta[i] - self.lr * m_hat - decay
        if t % self.k == 0:
            for i in range(len(self.theta)):
                self.phi[i] = self.phi[i] + self.alpha * (self.theta[i] - self.phi[i])
                self.theta[i] = self.phi[i].copy()


def _start(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3,)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)]


def _gradients(steps: int = STEPS, seed: int = 7) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    # Varying scales per step so the second moment is not trivially constant.
    return [
        [
            (rng.normal(size=(3,)) * rng.uniform(0.2, 2.0)).astype(np.float32),
            (rng.normal(size=(2, 2)) * rng.uniform(0.2, 2.0) + 0.3).astype(np.float32),
        ]
        for _ in range(steps)
    ]


def _variables(values: list[np.ndarray]) -> list[keras.Variable]:
    return [keras.Variable(v, dtype="float32") for v in values]


def _assert_matches(variables: list[keras.Variable], reference: ReferenceRanger, step: int) -> None:
    for i, (var, expected) in enumerate(zip(variables, reference.theta, strict=True)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(var), expected, **TOL, err_msg=f"step {step}, var {i}"
        )


def _run_and_compare(
    apply: Callable[[list], object],
    variables: list[keras.Variable],
    reference: ReferenceRanger,
    grads: list[list[np.ndarray]],
) -> None:
    for step, g in enumerate(grads, start=1):
        apply([keras.ops.convert_to_tensor(x) for x in g])
        reference.step(g)
        _assert_matches(variables, reference, step)


def test_the_reference_steps_cover_both_branches_away_from_the_threshold() -> None:
    reference = ReferenceRanger(_start(0), **HYPER)
    rhos = np.array([reference.rho(t) for t in range(1, STEPS + 1)])
    assert (rhos <= HYPER["sma_threshold"]).sum() >= 3
    assert (rhos > HYPER["sma_threshold"]).sum() >= 10
    # Far enough from the threshold that rounding cannot pick the other branch.
    assert np.abs(rhos - HYPER["sma_threshold"]).min() > 1e-3
    assert STEPS // HYPER["lookahead_k"] >= 2


def test_ranger_matches_reference_every_step() -> None:
    start = _start(0)
    variables = _variables(start)
    optimizer = Ranger(**HYPER)
    reference = ReferenceRanger(start, **HYPER)
    _run_and_compare(lambda g: optimizer.apply(g, variables), variables, reference, _gradients())
    assert int(optimizer.iterations) == STEPS


def test_ranger_with_weight_decay_matches_reference() -> None:
    start = _start(1)
    variables = _variables(start)
    optimizer = Ranger(**HYPER, weight_decay=0.2)
    reference = ReferenceRanger(start, **HYPER, weight_decay=0.2)
    _run_and_compare(lambda g: optimizer.apply(g, variables), variables, reference, _gradients())


def test_ranger_with_other_hyperparameters_matches_reference() -> None:
    hyper = {**HYPER, "beta_1": 0.9, "beta_2": 0.99, "lookahead_k": 4, "lookahead_alpha": 0.8}
    start = _start(2)
    variables = _variables(start)
    optimizer = Ranger(**hyper)
    reference = ReferenceRanger(start, **hyper)
    _run_and_compare(lambda g: optimizer.apply(g, variables), variables, reference, _gradients())


@pytest.mark.parametrize("second_start_seed", [0, 3], ids=["same_start", "new_start"])
def test_reset_makes_the_optimizer_behave_like_a_fresh_one(second_start_seed: int) -> None:
    grads = _gradients()
    variables = _variables(_start(0))
    optimizer = Ranger(**HYPER, weight_decay=0.1)
    # A first "fold" that stops mid Lookahead cycle, leaving moments and slow weights behind.
    for g in grads[:9]:
        optimizer.apply(g, variables)

    reset_optimizer(optimizer)
    assert int(optimizer.iterations) == 0
    assert float(optimizer.learning_rate) == pytest.approx(HYPER["learning_rate"])
    start = _start(second_start_seed)
    for var, value in zip(variables, start, strict=True):
        var.assign(value)

    fresh_variables = _variables(start)
    fresh = Ranger(**HYPER, weight_decay=0.1)
    reference = ReferenceRanger(start, **HYPER, weight_decay=0.1)
    for step, g in enumerate(grads, start=1):
        optimizer.apply(g, variables)
        fresh.apply(g, fresh_variables)
        reference.step(g)
        for var, fresh_var in zip(variables, fresh_variables, strict=True):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(var),
                keras.ops.convert_to_numpy(fresh_var),
                err_msg=f"step {step}",
            )
        _assert_matches(variables, reference, step)


def _two_rounds_with_a_reset(apply, optimizer, variables, start) -> None:
    """Compare with the reference for 14 steps, reset, and again: the second round runs after a
    reset, through the same compiled step."""
    grads = _gradients(steps=14)
    for _ in range(2):
        reference = ReferenceRanger(start, **HYPER, weight_decay=0.05)
        _run_and_compare(apply, variables, reference, grads)
        reset_optimizer(optimizer)
        for var, value in zip(variables, start, strict=True):
            var.assign(value)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function")
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_ranger_inside_tf_function_including_a_reset(jit_compile: bool) -> None:
    import tensorflow as tf

    start = _start(4)
    variables = _variables(start)
    optimizer = Ranger(**HYPER, weight_decay=0.05)
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def apply(grads: list) -> None:
        optimizer.apply(grads, variables)

    _two_rounds_with_a_reset(apply, optimizer, variables, start)
    assert apply.experimental_get_tracing_count() == 1


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function graphs")
def test_ranger_traces_one_lookahead_branch_and_one_step_factor_whatever_the_variables() -> None:
    """The traced update's branches and RAdam's scalar factors do not grow with the model: one
    Lookahead sync for every variable, the step factors computed once a step."""
    import tensorflow as tf

    def traced_ops(n_variables: int) -> tuple[int, int]:
        variables = [keras.Variable(np.ones(3, np.float32) * i) for i in range(n_variables)]
        optimizer = Ranger(**HYPER)
        optimizer.build(variables)
        grads = [tf.ones(3) for _ in variables]
        graph = tf.function(lambda: optimizer.apply(grads, variables)).get_concrete_function().graph
        ops = graph.get_operations()
        branches = sum(op.type in ("If", "StatelessIf") for op in ops)
        return branches, sum(op.type == "Expm1" for op in ops)

    assert traced_ops(2) == traced_ops(12)
    assert traced_ops(12)[1] == 1


def _apply(optimizer, grads, variables) -> None:
    """``optimizer.apply`` as the training step runs it: on JAX ``stateless_apply`` (a
    ``LossScaleOptimizer``'s eager ``apply`` branches with side effects, which JAX refuses)."""
    if keras.backend.backend() != "jax":
        optimizer.apply(grads, variables)
        return
    if not optimizer.built:
        optimizer.build(variables)
    values, state = optimizer.stateless_apply(
        [v.value for v in optimizer.variables],
        [keras.ops.convert_to_tensor(g) for g in grads],
        [v.value for v in variables],
    )
    for v, value in zip([*variables, *optimizer.variables], [*values, *state], strict=True):
        v.assign(value)


def test_reset_restores_loss_scale_and_can_set_the_learning_rate() -> None:
    variables = _variables(_start(0))
    optimizer = keras.optimizers.LossScaleOptimizer(Ranger(**HYPER))
    scale = optimizer.initial_scale
    for g in _gradients(steps=3):
        _apply(optimizer, [x * scale for x in g], variables)
    optimizer.dynamic_scale.assign(4.0)  # as if overflows had shrunk it

    reset_optimizer(optimizer, learning_rate=0.01)

    assert float(optimizer.dynamic_scale) == scale
    assert int(optimizer.iterations) == 0
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    inner = optimizer.inner_optimizer
    state = [v for v in inner.variables if v is not inner.learning_rate]
    assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in state)


def test_config_round_trip_and_registered_serialisation() -> None:
    optimizer = Ranger(
        learning_rate=0.02,
        beta_1=0.9,
        beta_2=0.99,
        epsilon=1e-6,
        sma_threshold=6.0,
        lookahead_k=5,
        lookahead_alpha=0.7,
        weight_decay=0.01,
        clipnorm=1.0,
        name="my_ranger",
    )
    config = optimizer.get_config()
    assert Ranger.from_config(config).get_config() == config

    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, Ranger)
    assert restored.get_config() == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"beta_1": 1.0}, "beta_1"),
        ({"beta_2": 0.0}, "beta_2"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"sma_threshold": 3.0}, "sma_threshold"),
        ({"beta_2": 0.5}, "rho_inf"),
        ({"lookahead_k": 0}, "lookahead_k"),
        ({"lookahead_k": 2.5}, "lookahead_k"),
        ({"lookahead_alpha": 0.0}, "lookahead_alpha"),
        ({"lookahead_alpha": 1.5}, "lookahead_alpha"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_ranger_rejects_out_of_range_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ranger(**kwargs)


def test_make_optimizer_maps_every_configured_name() -> None:
    expected = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "lion": keras.optimizers.Lion,
        "ranger": Ranger,
    }
    assert set(expected) == set(OPTIMIZERS)
    for name, cls in expected.items():
        optimizer = make_optimizer(name, 1e-3, 0.01)
        assert isinstance(optimizer, cls)  # PyTorch's Keras has its own subclasses
        assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert make_optimizer("adam", 1e-3, 0.01).weight_decay is None
    assert make_optimizer("adamw", 1e-3, 0.01).weight_decay == pytest.approx(0.01)
    assert make_optimizer("lion", 1e-4, 0.01).weight_decay == pytest.approx(0.01)
    assert make_optimizer("ranger", 1e-3, 0.01).weight_decay == pytest.approx(0.01)
    assert make_optimizer("ranger", 1e-3, 0.0).weight_decay is None


def test_make_optimizer_rejects_unknown_name_listing_valid_ones() -> None:
    with pytest.raises(InvalidConfig) as info:
        make_optimizer("sgd", 1e-3, 0.0)
    message = str(info.value)
    assert "'sgd'" in message
    assert all(name in message for name in OPTIMIZERS)


def test_ranger_minimises_a_quadratic() -> None:
    target = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    curvature = np.array([1.0, 4.0, 0.5, 2.0], np.float32)
    w = keras.Variable(np.zeros(4, np.float32))
    optimizer = Ranger(learning_rate=0.1)

    def loss() -> float:
        return float(np.sum(curvature * np.square(keras.ops.convert_to_numpy(w) - target)))

    initial = loss()
    for _ in range(150):
        grad = 2.0 * curvature * (keras.ops.convert_to_numpy(w) - target)  # d loss / d w
        optimizer.apply([keras.ops.convert_to_tensor(grad)], [w])
    assert loss() < 0.01 * initial


def test_model_fit_matches_an_eager_loop_in_every_fold() -> None:
    """Through Keras' own train step, with a reset between two folds.

    Keras builds the optimizer inside the first trace of its train function, where assigns made
    in ``build`` are dropped; the slow weights must still start at the model's weights.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=Ranger(learning_rate=0.1, weight_decay=0.01), loss="mse")
    initial = model.get_weights()

    # 8 steps, so the slow weights sync once (k=6) before the comparison.
    eager_model = keras.models.clone_model(model)
    eager_model.set_weights(initial)
    optimizer = Ranger(learning_rate=0.1, weight_decay=0.01)
    for _ in range(2):
        for start in range(0, len(x), 16):
            xb, yb = x[start : start + 16], y[start : start + 16]
            kernel, bias = (keras.ops.convert_to_numpy(v) for v in eager_model.trainable_variables)
            error = xb @ kernel + bias - yb  # the mean squared error's gradient, by hand
            grads = [2.0 * xb.T @ error / len(xb), 2.0 * error.mean(axis=0)]
            variables = eager_model.trainable_variables
            optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)

    for fold in range(2):
        model.set_weights(initial)
        reset_optimizer(model.optimizer)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        for got, expected in zip(model.get_weights(), eager_model.get_weights(), strict=True):
            np.testing.assert_allclose(got, expected, **TOL, err_msg=f"fold {fold}")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax.jit")
def test_ranger_under_jax_jit_stateless_apply_matches_reference_including_a_reset() -> None:
    """The form trainer.steps uses on JAX: ``stateless_apply`` inside ``jax.jit``."""
    import jax

    start = _start(4)
    variables = _variables(start)
    optimizer = Ranger(**HYPER, weight_decay=0.05)
    optimizer.build(variables)
    step = jax.jit(optimizer.stateless_apply)

    def apply(grads: list) -> None:
        values, state = step(
            [v.value for v in optimizer.variables], grads, [v.value for v in variables]
        )
        for v, value in zip(variables, values, strict=True):
            v.assign(value)
        for v, value in zip(optimizer.variables, state, strict=True):
            v.assign(value)

    _two_rounds_with_a_reset(apply, optimizer, variables, start)
    assert step._cache_size() == 1


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's fused kernel")
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_matches_keras_apply_gradients_including_a_reset(name, jit_compile) -> None:
    """The training step's fused Adam/AdamW against Keras's own update: same variables after
    every step, a bias excluded from decay, a reset in between; the fused graph holds one
    ResourceApplyAdam per variable and is smaller."""
    import tensorflow as tf

    from trainer.steps import fused_adam

    rng = np.random.default_rng(3)
    start = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in start] for _ in range(6)]
    runs, graphs = {}, {}
    for way in ("keras", "fused"):
        variables = [keras.Variable(v, name=f"w{i}") for i, v in enumerate(start)]
        optimizer = make_optimizer(name, 0.05, 0.1)
        if name == "adamw":
            optimizer.exclude_from_weight_decay(var_list=[variables[1]])
        optimizer.build(variables)
        fused = fused_adam(optimizer) if way == "fused" else None
        assert (fused is not None) == (way == "fused")

        apply = _compiled_update(fused, optimizer, variables, jit_compile)
        seen = []
        for k, g in enumerate(grads):
            if k == 3:
                reset_optimizer(optimizer)
            apply([tf.constant(x) for x in g])
            seen.append([keras.ops.convert_to_numpy(v) for v in variables])
        runs[way] = seen
        ops = apply.get_concrete_function([tf.constant(x) for x in grads[0]]).graph.get_operations()
        graphs[way] = ops
    for a, b in zip(runs["keras"], runs["fused"], strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5)  # float32 rounding
    assert sum(op.type == "ResourceApplyAdam" for op in graphs["fused"]) == 2
    assert len(graphs["fused"]) < len(graphs["keras"])
    assert not np.allclose(runs["fused"][-1][0], start[0])  # it trained


def _compiled_update(fused, optimizer, variables, jit_compile):
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def apply(g):
        if fused is not None:
            fused(g, variables)
        else:
            optimizer.apply_gradients(zip(g, variables, strict=True))

    return apply


def test_fused_adam_leaves_other_optimizers_to_keras() -> None:
    from trainer.steps import fused_adam

    assert fused_adam(make_optimizer("lion", 1e-3, 1e-4)) is None
    assert fused_adam(make_optimizer("ranger", 1e-3, 1e-4)) is None
    assert fused_adam(keras.optimizers.Adam(1e-3, amsgrad=True)) is None
    assert fused_adam(keras.optimizers.AdamW(1e-3, clipnorm=1.0)) is None
