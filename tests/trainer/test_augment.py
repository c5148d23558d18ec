from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainer import AUGMENT_LEVELS, InvalidConfig
from trainer.augment import _dihedral, make_augment


@pytest.fixture(scope="module")
def batch(real_arrays):
    images = tf.constant(real_arrays["images"][:32].astype("float32"))
    onehot = tf.one_hot(real_arrays["labels"][:32], 8)
    return images, onehot


@pytest.mark.parametrize("level", AUGMENT_LEVELS)
def test_each_level_keeps_shapes_dtypes_and_label_sums(level, batch) -> None:
    images, onehot = batch
    out_images, out_labels = make_augment(level, seed=3)(images, onehot)
    assert out_images.shape == images.shape and out_images.dtype == tf.float32
    assert out_labels.shape == onehot.shape and out_labels.dtype == tf.float32
    np.testing.assert_allclose(out_labels.numpy().sum(axis=1), 1.0, atol=1e-5)
    assert 0.0 <= float(tf.reduce_min(out_images)) and float(tf.reduce_max(out_images)) <= 255.0
    changed = float(tf.reduce_mean(tf.abs(out_images - images)))
    if level == "none":
        assert changed == 0.0
        np.testing.assert_array_equal(out_labels.numpy(), onehot.numpy())
    else:
        assert changed > 1.0


def test_heavy_mixes_labels_into_soft_labels(batch) -> None:
    images, onehot = batch
    soft = [make_augment("heavy", seed=s)(images, onehot)[1].numpy() for s in range(4)]
    assert any(((0 < s) & (s < 1)).any() for s in soft)


def test_dihedral_only_rotates_and_flips(batch) -> None:
    images, _ = batch
    out = _dihedral(images, seed=5).numpy()
    src = images.numpy()
    for a, b in zip(src, out, strict=True):
        variants = [np.rot90(a, k) for k in range(4)] + [np.rot90(a[::-1], k) for k in range(4)]
        assert any(np.array_equal(b, v) for v in variants)


def test_unknown_level_is_an_invalid_config() -> None:
    with pytest.raises(InvalidConfig, match="none, light, moderate, heavy"):
        make_augment("extreme")


def test_dihedral_reaches_all_eight_rotations_and_reflections() -> None:
    asym = np.arange(5 * 5 * 3, dtype="float32").reshape(5, 5, 3)  # no symmetry at all
    out = _dihedral(tf.constant(np.stack([asym] * 200)), seed=1).numpy()
    variants = [np.rot90(asym, k) for k in range(4)] + [np.rot90(asym[::-1], k) for k in range(4)]
    seen = [sum(np.array_equal(o, v) for o in out) for v in variants]
    assert sum(seen) == 200 and min(seen) >= 10  # every element, none starved (25 expected)


def test_heavy_runs_one_randaugment_operation_per_batch(batch) -> None:
    import keras

    from trainer.augment import _OneOp

    layer = _OneOp(keras.layers.RandAugment(value_range=(0, 255), num_ops=1, seed=2), seed=4)
    assert len(layer.ops) == 11
    calls: list[int] = []

    def counting(i, op):
        def run(images, training=True):
            calls.append(i)
            return op(images, training=training)

        return run

    layer.ops = [counting(i, op) for i, op in enumerate(layer.ops)]
    images, _ = batch
    layer(images[:4])  # the first call also traces every branch once (building, not running)
    calls.clear()
    for n in range(1, 61):
        out = layer(images[:4])
        assert len(calls) == n  # exactly one operation computed per batch
        assert out.shape == (4, *images.shape[1:]) and out.dtype == tf.float32
    assert len(set(calls)) >= 9  # the draw covers the operations (11 of them, 60 batches)
