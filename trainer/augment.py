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
    """Random element of the 8-element dihedral group per image: flips plus a random transpose.

    Flips in both axes with a random transpose give every 90-degree rotation and reflection,
    with no interpolation (the pixels are only moved).
    """
    n = tf.shape(images)[0]
    flips = tf.random.uniform((n, 3), seed=seed) < 0.5
    images = tf.where(flips[:, 0, None, None, None], tf.reverse(images, axis=[1]), images)
    images = tf.where(flips[:, 1, None, None, None], tf.reverse(images, axis=[2]), images)
    if images.shape[1] == images.shape[2]:
        transposed = tf.transpose(images, [0, 2, 1, 3])
        images = tf.where(flips[:, 2, None, None, None], transposed, images)
    return images


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
    heavy = [keras.layers.RandAugment(value_range=(0, 255), num_ops=1, factor=0.3, seed=seed + 5)]
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
