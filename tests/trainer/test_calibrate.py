"""Calibrating a model on its held-back slice: the temperature found is baked into the model,
the record survives its file, and the detector's threshold keeps in-domain images and flags
others."""

from __future__ import annotations

import io

import numpy as np
import pytest

from search.data.images import resize_all
from tests.conftest import stratified_subset
from tests.trainer.test_readout import _classifier
from trainer import calibrate, trust
from trainer.readout import Reader
from trainer.shifts import shift


def test_an_overconfident_model_is_tempered_in_place_and_its_record_round_trips(real_arrays):
    data = stratified_subset(real_arrays, 2000)
    images = resize_all(data.images, 32)
    model = _classifier(4)
    # A head whose logits spread widely on these images (random init differs by backend).
    features = Reader(model).features(images)
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(features.shape[1], 4))
    centred = (features - features.mean(axis=0)) @ kernel
    kernel *= 8.0 / max(float(centred.std()), 1e-6)
    bias = -(features.mean(axis=0) @ kernel)
    model.get_layer("head_softmax").set_weights([kernel.astype("float32"), bias.astype("float32")])
    raw = Reader(model).read(images, "none").logits
    # Labels drawn as a model at a temperature of 4 would be right: it is 4x overconfident.
    labels = np.array([rng.choice(4, p=p) for p in trust.tempered(raw, 4.0)])
    held = trust.calibration_slice(labels, seed=0)
    train = np.setdiff1d(np.arange(len(labels)), held)
    record, summary = calibrate.fit(model, "none", images, labels, train, held)
    assert record.temperature > 2.0 and summary["temperature"] == record.temperature
    np.testing.assert_allclose(
        model.predict(images[held], verbose=0),
        trust.tempered(raw[..., held, :], record.temperature),
        rtol=1e-4,
        atol=1e-5,
    )
    assert (
        summary["ece_after"] < summary["ece_before"]
        and summary["nll_after"] < summary["nll_before"]
    )
    assert summary["accuracy"] == summary["accuracy_before"]  # one view: argmax kept
    buffer = io.BytesIO()
    np.savez(buffer, **record.arrays())
    buffer.seek(0)
    with np.load(buffer) as arrays:
        again = calibrate.Trust.from_arrays(arrays)
    features = Reader(model).features(images[held])
    np.testing.assert_allclose(
        again.domain_score(features, images[held]), record.domain_score(features, images[held])
    )
    noise = shift(images[held], "noise")
    flagged = again.domain_score(Reader(model).features(noise), noise) > again.threshold
    assert flagged.mean() >= 0.9
    assert set(summary["domain"]["flagged_shifted"]) == {
        "stain",
        "illumination",
        "magnification",
        "camera",
        "noise",
    }


def test_a_trust_file_of_another_format_is_refused_with_its_path(tmp_path):
    np.savez(tmp_path / "trust.npz", format=np.array(99))
    with pytest.raises(ValueError, match="trust.npz"):
        calibrate.load(tmp_path)
    assert calibrate.load(tmp_path / "nothing") is None
