"""Test-time views: a model that averages its softmax over the views its training made it
invariant to, which are the study's symmetry (``trainer.config.SYMMETRIES``).

Every augmentation level but ``none`` trains on the orientations the data's symmetry allows: all
8 dihedral transforms (rotations by multiples of 90 degrees, each also mirrored), or the image
and its left-right mirror, or the image alone. The model has learnt that those carry the same
label, so averaging its predictions over them is accuracy for 8x (or 2x) the inference cost;
where a turn or a mirror changes the label (digits, text) there are no views to average.

The views are built from Keras's own layers, so the saved model still loads with
``keras.models.load_model`` and no custom objects: ``Permute`` transposes an image, and a mirror
is a ``Permute`` to put the width last, a frozen ``Dense`` whose kernel is the reversed identity
(one 1.0 per column: exact in float32) and a ``Permute`` back. Square inputs only (the
product's images are ``image_size`` x ``image_size``).
"""

from __future__ import annotations

import keras
import numpy as np

from trainer.errors import InvalidConfig

VIEWS = ("dihedral", "mirror", "none")
VIEW_COUNT = {"dihedral": 8, "mirror": 2, "none": 1}


def views_for(augment: str, symmetry: str = "dihedral") -> str:
    """The test-time views a model trained under ``augment`` with the data's ``symmetry`` has
    learnt to be invariant to (``symmetry`` is also the name of its views)."""
    return "none" if augment == "none" else symmetry


class _Mirror:
    """Reverse the width of N x S x S x C images with Keras layers (shared across calls)."""

    def __init__(self, size: int) -> None:
        self.to_last = keras.layers.Permute((1, 3, 2), dtype="float32", name="width_last")
        self.back = keras.layers.Permute((1, 3, 2), dtype="float32", name="width_back")
        self.reverse = keras.layers.Dense(
            size, use_bias=False, trainable=False, dtype="float32", name="reverse_width"
        )
        self.reverse.build((None, None, None, size))
        self.reverse.set_weights([np.eye(size, dtype=np.float32)[::-1]])

    def __call__(self, x):
        return self.back(self.reverse(self.to_last(x)))


def dihedral_model(model: keras.Model, *, name: str = "dihedral_views") -> keras.Model:
    """``model`` (N x S x S x C images -> class probabilities) wrapped to return the mean of its
    outputs over the 8 dihedral views of each input: rotations by 0, 90, 180 and 270 degrees of
    the image and of its mirror."""
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
        raise InvalidConfig(f"dihedral views need square images with a fixed size, got {shape}")
    inputs = keras.Input(shape, name="image")
    mirror = _Mirror(int(shape[0]))
    transpose = keras.layers.Permute((2, 1, 3), dtype="float32", name="transpose")
    views, mirrored = [], mirror(inputs)
    for start in (inputs, mirrored):
        view = start
        for _ in range(4):
            views.append(view)
            view = mirror(transpose(view))  # a quarter turn
    outputs = [model(view) for view in views]
    mean = keras.layers.Average(dtype="float32", name="mean_over_views")(outputs)
    return keras.Model(inputs, mean, name=name)


def mirror_model(model: keras.Model, *, name: str = "mirror_views") -> keras.Model:
    """``model`` wrapped to return the mean of its outputs on each image and its left-right
    mirror."""
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or shape[1] is None:
        raise InvalidConfig(f"mirror views need images with a fixed width, got {shape}")
    inputs = keras.Input(shape, name="image")
    mirror = _Mirror(int(shape[1]))
    outputs = [model(inputs), model(mirror(inputs))]
    mean = keras.layers.Average(dtype="float32", name="mean_over_views")(outputs)
    return keras.Model(inputs, mean, name=name)


def with_views(model: keras.Model, views: str) -> keras.Model:
    """``model`` itself for ``"none"``, else the mean over its ``"dihedral"`` or ``"mirror"``
    views."""
    if views not in VIEWS:
        raise InvalidConfig(f"test-time views {views!r} is not one of {', '.join(VIEWS)}")
    if views == "none":
        return model
    return dihedral_model(model) if views == "dihedral" else mirror_model(model)
