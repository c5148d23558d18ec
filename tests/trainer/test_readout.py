"""The read-out of an exported model: its logits re-make exactly what the model predicts (every
member, every view, after saving and loading), and a baked temperature is temperature scaling."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.backbones import build_model
from trainer.config import TrialConfig
from trainer.errors import InvalidConfig
from trainer.final import ensemble_model
from trainer.readout import Reader, classifiers, view_images
from trainer.trust import tempered
from trainer.views import with_views


def _classifier(seed: int, size: int = 32, head_width: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    cfg = TrialConfig(backbone="small_cnn", weights="none", image_size=size, head_width=head_width)
    return build_model(cfg, 4, steps_per_epoch=4).model


@pytest.mark.parametrize("views", ["dihedral", "mirror", "none"])
def test_the_logits_remake_the_models_own_probabilities_after_loading(tmp_path, views):
    members = [_classifier(1), _classifier(2, head_width=8)]
    model = with_views(ensemble_model(members), views)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    images = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    reader = Reader(loaded)
    out = reader.read(images, views)
    assert out.logits.shape == (2, {"dihedral": 8, "mirror": 2, "none": 1}[views], 5, 4)
    assert out.features.shape[0] == 5
    expected = loaded.predict(images, verbose=0)
    np.testing.assert_allclose(tempered(out.logits, 1.0), expected, rtol=1e-4, atol=1e-5)
    # Baking a temperature in gives softmax(z / T) per view and member, averaged.
    reader.temper(2.5)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), tempered(out.logits, 2.5), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(InvalidConfig, match="positive"):
        reader.temper(0.0)


def test_a_model_not_built_here_is_refused_with_what_is_missing():
    inputs = keras.Input((8, 8, 3))
    plain = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(InvalidConfig, match="head_softmax"):
        classifiers(plain)
    with pytest.raises(InvalidConfig, match="not one of"):
        view_images(np.zeros((1, 4, 4, 3)), "twelve")
