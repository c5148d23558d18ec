"""Augmentation levels for training batches: Keras 3 layers and ops, seeded per batch.

What a level may change follows the data, never a constant: the orientation changes are the
study's ``symmetry`` (quarter turns and mirror, mirror only, or none) and the colour changes its
``colour`` (hue and saturation shifted, or kept when colour carries the label). Every level
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
from trainer.config import AUGMENT_LEVELS, COLOURS, SYMMETRIES
from trainer.errors import InvalidConfig


def _colour(colour: str, **shift: object) -> Colour:
    """The ``Colour`` layer with ``shift``'s hue and saturation ranges, or none of them when the
    study's colour is ``keep`` (brightness and contrast as given either way)."""
    if colour == "keep":
        shift = {**shift, "hue": 0.0, "saturation": (0.5, 0.5)}  # 0.5: saturation unchanged
    return Colour(**shift)  # type: ignore[arg-type]


def _layers(level: str, colour: str) -> list[keras.layers.Layer]:
    """Image-only layers of a level after the geometry (each level adds to the one before)."""
    if level in ("moderate", "heavy"):
        return [_colour(colour), Blur(factor=0.3, sigma=1.0), Noise(0.015)]  # noise: 4 greys
    if level == "robust":
        # What a second camera, scanner or lab changes: exposure and colour (hue up to +-18
        # degrees), focus, sensor noise and compression, each on part of the batch.
        return [
            _colour(colour, brightness=0.12, contrast=0.3, saturation=(0.4, 0.6), hue=0.1, p=0.6),
            Defocus(),
            SensorNoise(),
            Jpeg(),
        ]
    return []


def _rand_augment(seed: int, symmetry: str) -> OneOp:
    """Keras's RandAugment, one operation a batch; its rotation (up to +-108 degrees at this
    factor) only where the data's symmetry allows turns."""
    layer = keras.layers.RandAugment(
        value_range=(0, 255), num_ops=1, factor=0.3, seed=seed + 5, dtype="float32"
    )
    if symmetry != "dihedral":
        layer._AUGMENT_LAYERS = [n for n in layer._AUGMENT_LAYERS if n != "random_rotation"]
    return OneOp(layer)


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

    def __init__(
        self, level: str, *, seed: int = 0, symmetry: str = "dihedral", colour: str = "shift"
    ) -> None:
        if level not in AUGMENT_LEVELS:
            raise InvalidConfig(f"augment={level!r} is not one of {', '.join(AUGMENT_LEVELS)}")
        if symmetry not in SYMMETRIES:
            raise InvalidConfig(f"symmetry={symmetry!r} is not one of {', '.join(SYMMETRIES)}")
        if colour not in COLOURS:
            raise InvalidConfig(f"colour={colour!r} is not one of {', '.join(COLOURS)}")
        self.level = level
        self.symmetry = symmetry
        self.colour = colour
        self.seed = seed
        self.calls = 0
        self.geometry = Geometry(
            zoom=0.1,
            shift=0.08 if level in ("moderate", "heavy", "robust") else 0.0,
            any_angle=level == "robust",
            symmetry=symmetry,
        )
        self.layers = _layers(level, colour)
        self.one_op = _rand_augment(seed, symmetry) if level == "heavy" else None
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


def make_augment(
    level: str, *, seed: int = 0, symmetry: str = "dihedral", colour: str = "shift"
) -> Augment:
    """Return the batch function ``(images, onehot[, seed]) -> (images, labels)`` for a level,
    changing orientation and colour only as ``symmetry`` and ``colour`` allow."""
    return Augment(level, seed=seed, symmetry=symmetry, colour=colour)
