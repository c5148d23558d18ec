"""Augmentation levels built from Keras 3's own preprocessing layers, applied to training batches.

Blood cells have no up or down, so both flips and 90-degree rotations are label-safe. Every level
maps a batch ``(images float32 0..255, one-hot labels)`` to the same shapes and dtypes; ``heavy``
mixes pairs of images (MixUp or CutMix), so its labels become soft but still sum to one.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from trainer.config import AUGMENT_LEVELS
from trainer.errors import InvalidConfig

BatchFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _dihedral(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Random element of the 8-element dihedral group per image: a 90-degree rotation, then a flip.

    ``rot90`` by k in 0..3 times an optional flip reaches all 8 rotations and reflections with
    equal probability, with no interpolation (the pixels are only moved). Per image through
    ``map_fn``: only the chosen transform is computed, about 5x faster than computing every
    flip and transpose of the whole batch and selecting. Non-square images only get flips.
    """
    square = images.shape[1] is not None and images.shape[1] == images.shape[2]

    def one(image: tf.Tensor) -> tf.Tensor:
        draw = tf.random.uniform((2,), seed=seed)
        if square:
            image = tf.image.rot90(image, tf.cast(draw[0] * 4, tf.int32) % 4)
        else:
            image = tf.cond(draw[0] < 0.5, lambda: tf.reverse(image, [0]), lambda: image)
        return tf.cond(draw[1] < 0.5, lambda: tf.reverse(image, [1]), lambda: image)

    return tf.map_fn(one, images)


class _OneOp(keras.layers.Layer):
    """RandAugment's operations, one drawn per batch, with only the drawn one computed.

    ``keras.layers.RandAugment`` also draws its operations per batch, but computes all eleven
    on every batch and then selects (about 20x the cost of one operation). This uses the same
    layer's own operations, configured by its ``factor`` and ``value_range``, and ``switch_case``.
    """

    def __init__(self, rand_augment: keras.layers.RandAugment, seed: int) -> None:
        super().__init__(name="rand_augment_one_op")  # a valid root scope inside tf.data
        self.ops = [getattr(rand_augment, name) for name in rand_augment._AUGMENT_LAYERS]
        self.seed = seed

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        index = tf.random.uniform((), 0, len(self.ops), dtype=tf.int32, seed=self.seed)
        branches = [
            lambda op=op: tf.cast(op(images, training=True), images.dtype) for op in self.ops
        ]
        return tf.switch_case(index, branches)


def _layers(level: str, seed: int) -> list[keras.layers.Layer]:
    """Image-only layers of a level (each level adds to the one before)."""
    light = [keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed)]
    moderate = [
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomColorJitter(
            value_range=(0, 255),
            brightness_factor=0.15,
            contrast_factor=0.2,
            saturation_factor=(0.35, 0.65),
            hue_factor=0.04,
            seed=seed + 2,
        ),
        keras.layers.RandomGaussianBlur(factor=0.3, kernel_size=3, sigma=1.0, seed=seed + 3),
    ]
    noise = keras.layers.GaussianNoise(0.015, seed=seed + 4)  # on 0..1 scale, about 4 grey levels
    rand_augment = keras.layers.RandAugment(
        value_range=(0, 255), num_ops=1, factor=0.3, seed=seed + 5
    )
    heavy = [_OneOp(rand_augment, seed + 5)]
    chosen: list[keras.layers.Layer] = []
    if level in ("light", "moderate", "heavy"):
        chosen += light
    if level in ("moderate", "heavy"):
        chosen += moderate
        chosen.append(keras.layers.Lambda(lambda x: noise(x / 255.0, training=True) * 255.0))
    if level == "heavy":
        chosen += heavy
    return chosen


def make_augment(level: str, *, seed: int = 0) -> BatchFn:
    """Return a batch function ``(images, onehot) -> (images, labels)`` for one level."""
    if level not in AUGMENT_LEVELS:
        raise InvalidConfig(f"augment={level!r} is not one of {', '.join(AUGMENT_LEVELS)}")
    layers = _layers(level, seed)
    mixers = (
        [
            keras.layers.MixUp(alpha=0.2, seed=seed + 6),
            keras.layers.CutMix(factor=1.0, seed=seed + 7),
        ]
        if level == "heavy"
        else []
    )

    def augment(images: tf.Tensor, onehot: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if level == "none":
            return images, onehot
        images = _dihedral(images, seed)
        for layer in layers:
            images = layer(images, training=True)
        images = tf.clip_by_value(images, 0.0, 255.0)
        if mixers:
            # MixUp or CutMix, chosen per batch; labels are mixed in the same proportions.
            batch = {"images": images, "labels": onehot}
            use_mixup = tf.random.uniform((), seed=seed + 8) < 0.5
            out = tf.cond(
                use_mixup,
                lambda: mixers[0](batch, training=True),
                lambda: mixers[1](batch, training=True),
            )
            images, onehot = out["images"], out["labels"]
        return tf.cast(images, tf.float32), tf.cast(onehot, tf.float32)

    return augment
