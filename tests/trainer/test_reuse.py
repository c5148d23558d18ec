"""A worker keeps a built model (and its traced inference and statistics passes) for later
trials of the same architecture: a trial on a kept model trains exactly as on a fresh build,
with its own dropout, L2, batch size (BatchNorm momentum) and optimizer."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import loop
from trainer.config import Decision, TrialConfig
from trainer.folds import make_folds
from trainer.train import train_trial


@pytest.fixture(autouse=True)
def _fresh():
    loop.forget_models()
    yield
    loop.forget_models()


def _go(*_: object) -> Decision:
    return Decision.CONTINUE


def _curve(result) -> list[tuple[float, float]]:
    return [(e.train_loss, e.accuracy) for f in result.folds for e in f.epochs]


def _run(cfg: TrialConfig, data, folds):
    return train_trial(cfg, data, folds, _go)


BASE = dict(backbone="small_cnn", image_size=32, epochs=2, patience=0, plateau_patience=0, seed=5)


def test_a_kept_model_trains_as_a_fresh_build_with_other_knobs(real_small) -> None:
    """Trial A builds; trial B (same architecture, other dropout, L2, batch size, optimizer,
    learning rate, label smoothing) runs on A's kept model and matches B on a fresh build."""
    folds = make_folds(real_small.labels, 3, seed=0)[:2]
    a = TrialConfig(**BASE, dropout=0.1, l2=1e-6, batch_size=32, optimizer="adamw")
    b = TrialConfig(
        **BASE, dropout=0.5, l2=1e-3, batch_size=64, optimizer="lion", learning_rate=3e-4,
        label_smoothing=0.1,
    )  # fmt: skip
    _run(a, real_small, folds)
    assert len(loop._KEPT) == 1
    kept = next(iter(loop._KEPT.values())).built.model
    reused = _run(b, real_small, folds)
    assert next(iter(loop._KEPT.values())).built.model is kept  # no new build
    loop.forget_models()
    fresh = _run(b, real_small, folds)
    assert next(iter(loop._KEPT.values())).built.model is not kept
    np.testing.assert_allclose(_curve(reused), _curve(fresh), rtol=1e-5, atol=1e-6)


def test_a_kept_optimizer_and_its_traced_step_serve_other_rates_decay_smoothing_l2_dropout(
    real_small,
) -> None:
    """Trial A traces its step; trial B (same architecture, optimizer and batch size; another
    learning rate, weight decay, label smoothing, L2 and dropout) trains with A's very step
    function, reading B's values at run time, and matches B on a fresh build."""
    folds = make_folds(real_small.labels, 3, seed=3)[:1]
    a = TrialConfig(**BASE, optimizer="adamw", learning_rate=2e-3, weight_decay=1e-4)
    b = TrialConfig(
        **BASE, optimizer="adamw", learning_rate=5e-4, weight_decay=3e-2, label_smoothing=0.1,
        l2=1e-3, dropout=0.5,
    )  # fmt: skip
    _run(a, real_small, folds)
    (kept,) = loop._KEPT.values()
    (phases,) = kept.phases.values()
    step = phases["train"].step
    reused = _run(b, real_small, folds)
    (again,) = kept.phases.values()
    assert again["train"].step is step  # traced once, for both trials
    loop.forget_models()
    fresh = _run(b, real_small, folds)
    np.testing.assert_allclose(_curve(reused), _curve(fresh), rtol=1e-5, atol=1e-6)
    a_again = _run(a, real_small, folds)  # and back: A's values come back with A
    loop.forget_models()
    np.testing.assert_allclose(
        _curve(a_again), _curve(_run(a, real_small, folds)), rtol=1e-5, atol=1e-6
    )


def test_another_architecture_between_leaves_the_kept_model_exact(real_small) -> None:
    """A, then C (another head width: another model), then A again on its kept model: A's
    second run repeats its first."""
    folds = make_folds(real_small.labels, 3, seed=1)[:1]
    a = TrialConfig(**BASE, head_width=0)
    c = TrialConfig(**BASE, head_width=64)
    first = _run(a, real_small, folds)
    _run(c, real_small, folds)
    assert len(loop._KEPT) == 2
    again = _run(a, real_small, folds)
    assert len(loop._KEPT) == 2
    np.testing.assert_allclose(_curve(again), _curve(first), rtol=1e-5, atol=1e-6)


def test_the_key_separates_what_changes_the_graph_or_the_first_weights(real_small) -> None:
    cfg = TrialConfig(**BASE)
    key = loop.architecture_key(cfg, real_small)
    for other in (
        cfg.replace(head_width=64),
        cfg.replace(image_size=48),
        cfg.replace(seed=6),
        cfg.replace(backbone="MobileNetV3Small"),
    ):
        assert loop.architecture_key(other, real_small) != key
    for same in (cfg.replace(dropout=0.4, l2=1e-3, batch_size=64, learning_rate=1e-4),):
        assert loop.architecture_key(same, real_small) == key


def test_a_worker_keeps_at_most_max_kept_models(real_small) -> None:
    folds = make_folds(real_small.labels, 3, seed=2)[:1]
    for size in range(32, 32 + 8 * (loop.MAX_KEPT + 1), 8):
        _run(TrialConfig(**{**BASE, "epochs": 1, "image_size": size}), real_small, folds)
    assert len(loop._KEPT) == loop.MAX_KEPT
    assert [k[2] for k in loop._KEPT][-1] == 32 + 8 * loop.MAX_KEPT  # the newest kept


def test_the_run_time_loss_is_keras_smoothing_and_l2() -> None:
    """The kept model's loss (smoothing and L2 as tensors) is Keras' label-smoothed
    cross-entropy plus ``keras.regularizers.L2`` on the head's kernels."""
    import keras

    from trainer.steps import _knob_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 5)).astype("float32")
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    onehot = np.eye(5, dtype="float32")[rng.integers(0, 5, 16)]
    weights = rng.uniform(0.5, 2.0, 16).astype("float32")
    kernels = [rng.normal(size=(8, 5)).astype("float32"), rng.normal(size=(3, 8)).astype("float32")]
    expected = float(
        np.mean(
            keras.ops.convert_to_numpy(
                keras.losses.categorical_crossentropy(onehot, probs, label_smoothing=0.1)
            )
            * weights
        )
        + sum(float(keras.regularizers.L2(1e-3)(k)) for k in kernels)
    )
    got = _knob_loss(probs, onehot, weights, np.float32(0.1), np.float32(1e-3), kernels, [])
    assert float(got) == pytest.approx(expected, rel=1e-6)
