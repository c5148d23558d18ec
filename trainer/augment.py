"""Augmentation levels for training batches: Keras 3 layers and ops, seeded per batch.

Blood cells have no up or down, so both flips and 90-degree rotations are label-safe. Every level
maps a batch ``(images float32 0..255, one-hot labels)`` to the same shapes and dtypes; ``heavy``
mixes pairs of images (MixUp or CutMix), so its labels become soft but still sum to one.

``heavy`` adds Keras's own ``RandAugment`` operations (one per batch), ``MixUp`` and ``CutMix``.
The geometry, colour, blur, noise, focus and compression steps are the layers of
``trainer.augment_layers`` (one warp per image, one colour matrix per image, only the chosen
images blurred or compressed).
"""

from __future__ import annotations

import keras

from trainer import backend
from trainer.augment_layers import (
    Blur,
    Colour,
    Defocus,
    Geometry,
    Jpeg,
    Noise,
    OneOp,
    SensorNoise,
)
from trainer.config import AUGMENT_LEVELS
from trainer.errors import InvalidConfig


def _layers(level: str) -> list[keras.layers.Layer]:
    """Image-only layers of a level after the geometry (each level adds to the one before)."""
    if level in ("moderate", "heavy"):
        return [Colour(), Blur(factor=0.3, sigma=1.0), Noise(0.015)]  # noise: 4 grey levels
    if level == "robust":
        # What a second microscope, scanner or lab changes: exposure and stain colour (hue up
        # to +-18 degrees), focus, sensor noise and compression, each on part of the batch.
        return [
            Colour(brightness=0.12, contrast=0.3, saturation=(0.4, 0.6), hue=0.1, p=0.6),
            Defocus(),
            SensorNoise(),
            Jpeg(),
        ]
    return []


def _seed_generators(layers: list[keras.layers.Layer]) -> list[keras.random.SeedGenerator]:
    found: dict[int, keras.random.SeedGenerator] = {}
    for layer in layers:
        for sub in layer._flatten_layers(include_self=True):
            for generator in sub._seed_generators:
                found.setdefault(id(generator), generator)
    return list(found.values())


class Augment:
    """One augmentation level as ``(images 0..255, one-hot, seed) -> (images, labels)``.

    Deterministic in ``seed`` (a [2] integer seed, ``backend.batch_seed``): every Keras layer's ``SeedGenerator`` is
    re-seeded from it at the start of each call, so a batch's augmentation depends on its seed
    alone, not on how many batches were made before (batches are made ahead on another thread,
    and a resumed trial skips folds). Called without a seed (eagerly, e.g. in a notebook), it
    uses ``(seed, number of calls so far)``.
    """

    def __init__(self, level: str, *, seed: int = 0) -> None:
        if level not in AUGMENT_LEVELS:
            raise InvalidConfig(f"augment={level!r} is not one of {', '.join(AUGMENT_LEVELS)}")
        self.level = level
        self.seed = seed
        self.calls = 0
        self.geometry = Geometry(
            zoom=0.1,
            shift=0.08 if level in ("moderate", "heavy", "robust") else 0.0,
            any_angle=level == "robust",
        )
        self.layers = _layers(level)
        self.one_op = (
            OneOp(
                keras.layers.RandAugment(
                    value_range=(0, 255), num_ops=1, factor=0.3, seed=seed + 5, dtype="float32"
                )
            )
            if level == "heavy"
            else None
        )
        self.mixers = (
            [
                keras.layers.MixUp(alpha=0.2, seed=seed + 6, dtype="float32"),
                keras.layers.CutMix(factor=1.0, seed=seed + 7, dtype="float32"),
            ]
            if level == "heavy"
            else []
        )
        extra = [self.one_op] if self.one_op is not None else []
        self.generators = _seed_generators(self.layers + extra + self.mixers)

    def __call__(self, images, onehot, seed=None):
        if self.level == "none":
            return images, onehot
        if seed is None:
            seed = backend.batch_seed(self.seed, self.calls)
            self.calls += 1
        if self.generators:
            states = backend.integer_pairs(seed, len(self.generators))
            for i, generator in enumerate(self.generators):
                generator.state.assign(keras.ops.cast(states[i], generator.state.dtype))
        images = self.geometry(images, seed)
        for layer in self.layers:
            images = layer(images, seed)
        if self.one_op is not None:
            images = self.one_op(images, seed)
        images = keras.ops.clip(images, 0.0, 255.0)
        if self.mixers:
            # MixUp or CutMix, chosen per batch; labels are mixed in the same proportions.
            batch = {"images": images, "labels": onehot}
            out = backend.cond(
                backend.uniform(seed, (), salt=6) < 0.5,
                lambda: self.mixers[0](batch, training=True),
                lambda: self.mixers[1](batch, training=True),
            )
            images, onehot = out["images"], out["labels"]
        return keras.ops.cast(images, "float32"), keras.ops.cast(onehot, "float32")


def make_augment(level: str, *, seed: int = 0) -> Augment:
    """Return the batch function ``(images, onehot[, seed]) -> (images, labels)`` for a level."""
    return Augment(level, seed=seed)
