"""The dihedral test-time views: the wrapped model averages exactly the 8 views, and still loads
with plain Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.errors import InvalidConfig
from trainer.views import dihedral_model, views_for, with_views


def _position_sensitive_model(size: int) -> keras.Model:
    """A model whose output changes under every flip and rotation (a dense layer on the pixels)."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(inputs)
    out = keras.layers.Dense(5, activation="softmax", kernel_initializer="glorot_uniform")(x)
    return keras.Model(inputs, out)


def _numpy_views(images: np.ndarray) -> list[np.ndarray]:
    views = []
    for start in (images, images[:, :, ::-1]):
        views += [np.rot90(start, k, axes=(1, 2)) for k in range(4)]
    return views


def test_the_wrapped_model_is_the_mean_over_the_eight_dihedral_views(tmp_path):
    keras.utils.set_random_seed(3)
    model = _position_sensitive_model(6)
    images = np.random.default_rng(0).uniform(0, 255, (4, 6, 6, 3)).astype(np.float32)
    per_view = [model.predict(np.ascontiguousarray(v), verbose=0) for v in _numpy_views(images)]
    assert len({p.tobytes() for p in per_view}) == 8  # the views differ for this model
    wrapped = dihedral_model(model)
    np.testing.assert_allclose(
        wrapped.predict(images, verbose=0), np.mean(per_view, axis=0), rtol=1e-5, atol=1e-6
    )
    # Saved and loaded with no custom objects, it predicts the same.
    wrapped.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), wrapped.predict(images, verbose=0), rtol=1e-6
    )
    assert not any(w.trainable for w in loaded.layers if w.name == "reverse_width")


def test_views_follow_the_augmentation_and_refuse_what_they_cannot_do():
    assert views_for("none") == "none"
    assert {views_for(a) for a in ("light", "moderate", "heavy", "robust")} == {"dihedral"}
    model = _position_sensitive_model(4)
    assert with_views(model, "none") is model
    with pytest.raises(InvalidConfig, match="not one of"):
        with_views(model, "tenfold")
    inputs = keras.Input((4, 6, 3))
    wide = keras.Model(inputs, keras.layers.Flatten()(inputs))
    with pytest.raises(InvalidConfig, match="square"):
        dihedral_model(wide)


def test_mirror_views_average_the_image_and_its_mirror_and_follow_the_symmetry(tmp_path):
    keras.utils.set_random_seed(4)
    model = _position_sensitive_model(6)
    images = np.random.default_rng(1).uniform(0, 255, (3, 6, 6, 3)).astype(np.float32)
    plain = model.predict(images, verbose=0)
    mirrored = model.predict(np.ascontiguousarray(images[:, :, ::-1]), verbose=0)
    wrapped = with_views(model, "mirror")
    np.testing.assert_allclose(
        wrapped.predict(images, verbose=0), (plain + mirrored) / 2, rtol=1e-5, atol=1e-6
    )
    wrapped.save(tmp_path / "m.keras")  # plain Keras layers: loads with no custom objects
    np.testing.assert_allclose(
        keras.models.load_model(tmp_path / "m.keras").predict(images, verbose=0),
        wrapped.predict(images, verbose=0),
        rtol=1e-6,
    )
    assert views_for("robust", "mirror") == "mirror"
    assert views_for("light", "none") == "none" and views_for("none", "dihedral") == "none"
