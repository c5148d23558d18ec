"""What a trained classifier sees and how sure it is, read out of a Keras model: the pooled
backbone features (for the in-domain detector) and the logits of every ensemble member and
test-time view (for temperature scaling); and the temperature baked back into the model.

A classifier here is what ``trainer.backbones.build_model`` makes: image -> backbone (pooled)
-> ``head_dropout`` -> [``head_dense`` -> ``head_dropout2``] -> ``head_softmax``. An exported
model wraps one or more of them (an ensemble's members, the test-time views); the views are
re-made in numpy (``view_images``), so the read-out averages exactly what the model averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from trainer.errors import InvalidConfig

FEATURES_LAYER = "head_dropout"  # its input: the backbone's pooled features
OUTPUT_LAYER = "head_softmax"  # Dense + softmax: its input times the kernel are the logits


def classifiers(model: keras.Model) -> list[keras.Model]:
    """The classifiers inside ``model`` (itself, an ensemble's members), in layer order."""
    found: list[keras.Model] = []

    def walk(layer: keras.layers.Layer) -> None:
        inner = getattr(layer, "layers", None)
        if inner is None:
            return
        if any(child.name == OUTPUT_LAYER for child in inner):
            found.append(layer)
            return
        for child in inner:
            walk(child)

    walk(model)
    if not found:
        raise InvalidConfig(
            f"model {model.name!r} has no '{OUTPUT_LAYER}' layer: it was not built by this project"
        )
    return found


def view_images(images: np.ndarray, views: str) -> list[np.ndarray]:
    """The test-time views of ``images`` (N x S x S x C) as ``trainer.views`` builds them: the
    8 dihedral transforms, the image and its left-right mirror, or the image alone."""
    if views == "none":
        return [images]
    mirrored = images[:, :, ::-1]
    if views == "mirror":
        return [images, mirrored]
    if views == "dihedral":
        return [np.rot90(start, k, axes=(1, 2)) for start in (images, mirrored) for k in range(4)]
    raise InvalidConfig(f"test-time views {views!r} is not one of dihedral, mirror, none")


@dataclass(frozen=True)
class Readout:
    """Pooled features of the first classifier on the plain images (N x D), and the logits of
    every classifier on every view (members x views x N x C)."""

    features: np.ndarray
    logits: np.ndarray


class Reader:
    """Feature and logit read-out of each classifier in a model, built once."""

    def __init__(self, model: keras.Model) -> None:
        self.heads = []
        self.parts = []
        for member in classifiers(model):
            head = member.get_layer(OUTPUT_LAYER)
            pooled = member.get_layer(FEATURES_LAYER).input
            self.parts.append(keras.Model(member.inputs, [pooled, head.input]))
            self.heads.append(head)

    def features(self, images: np.ndarray, batch: int = 128) -> np.ndarray:
        pooled, _ = self.parts[0].predict(_float(images), batch_size=batch, verbose=0)
        return np.asarray(pooled, np.float32)

    def read(self, images: np.ndarray, views: str, batch: int = 128) -> Readout:
        features = None
        logits = []
        for part, head in zip(self.parts, self.heads, strict=True):
            kernel, bias = (np.asarray(w, np.float64) for w in head.get_weights())
            per_view = []
            for view in view_images(_float(images), views):
                pooled, hidden = part.predict(
                    np.ascontiguousarray(view), batch_size=batch, verbose=0
                )
                if features is None:
                    features = np.asarray(pooled, np.float32)
                per_view.append(np.asarray(hidden, np.float64) @ kernel + bias)
            logits.append(per_view)
        return Readout(features, np.asarray(logits))

    def temper(self, temperature: float) -> None:
        """Divide every classifier's logits by ``temperature`` (its softmax kernel and bias), so
        the model itself gives the calibrated probabilities."""
        if not temperature > 0:
            raise InvalidConfig(f"temperature must be positive, got {temperature}")
        for head in self.heads:
            head.set_weights([np.asarray(w) / temperature for w in head.get_weights()])


def _float(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32)
