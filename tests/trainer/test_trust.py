"""The numbers behind an export's trust: the calibration slice, temperature scaling, split
conformal sets, the detector threshold's retention, and the pixel statistics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainer import trust
from trainer.shifts import SHIFTS, shift


def test_the_calibration_slice_is_stratified_bounded_and_leaves_every_class_training():
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    held = trust.calibration_slice(labels, seed=0)
    assert len(held) == 100 and len(np.unique(held)) == 100
    assert np.bincount(labels[held], minlength=4).tolist() == [50, 30, 15, 5]
    assert not np.array_equal(held, trust.calibration_slice(labels, seed=1))
    big = np.repeat(np.arange(3), 5000)
    assert len(trust.calibration_slice(big, 0)) == trust.CALIBRATION_MAX
    assert len(trust.calibration_slice(np.repeat(np.arange(2), 90), 0)) == 0  # 18 < 20
    rare = np.array([0] * 400 + [1])
    assert 1 not in rare[trust.calibration_slice(rare, 0)]  # a lone image stays in training


def _overconfident(n: int, seed: int, temperature: float = 3.0):
    """Logits whose labels are drawn from softmax(z / temperature): calibrated at that T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (1, 1, n, 5))
    probs = trust.tempered(logits, temperature)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    return logits, labels


def test_temperature_scaling_finds_the_temperature_and_keeps_every_prediction():
    logits, labels = _overconfident(4000, 0)
    t = trust.fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before, after = trust.tempered(logits, 1.0), trust.tempered(logits, t)
    assert np.array_equal(before.argmax(1), after.argmax(1))
    assert trust.reliability(after, labels).ece < 0.5 * trust.reliability(before, labels).ece


def test_the_temperature_of_an_ensemble_of_views_is_found_and_a_perfect_slice_keeps_one():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 4, (2, 8, 3000, 5))
    probs = trust.tempered(logits, 2.5)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    assert trust.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)
    # No mistake to learn from: an unguarded fit would run to its lower bound.
    right = trust.tempered(logits, 1.0).argmax(axis=1)
    assert trust.fit_temperature(logits[..., :200, :], right[:200]) == 1.0


def test_conformal_sets_cover_at_least_the_level_asked_on_new_images():
    logits, labels = _overconfident(6000, 1)
    probs = trust.tempered(logits, 3.0)
    cal, test = slice(0, 1000), slice(1000, None)
    for level in (0.8, 0.9, 0.95):
        q = trust.conformal_threshold(trust.set_scores(probs[cal], labels[cal]), level)
        sets = trust.prediction_sets(probs[test], q)
        covered = sets[np.arange(len(sets)), labels[test]].mean()
        assert level - 0.02 <= covered <= level + 0.04
        assert sets.any(axis=1).all()
    assert trust.conformal_threshold(np.array([0.1, 0.2]), 0.95) == 1.0  # too few: every class
    with pytest.raises(ValueError, match="between 0 and 1"):
        trust.conformal_threshold(np.array([0.1]), 1.0)


def test_the_threshold_keeps_the_retention_asked_with_the_confidence_asked():
    rng = np.random.default_rng(2)
    kept = []
    for _ in range(400):
        scores = rng.normal(size=300)
        kept.append(np.mean(rng.normal(size=4000) <= trust.threshold_for(scores)))
    kept = np.array(kept)
    assert np.mean(kept >= trust.RETAIN) >= trust.CONFIDENCE - 0.04
    k = trust.retention_rank(300)
    assert 0.95 * 301 < k <= 300
    assert trust.retention_confidence(300) >= trust.CONFIDENCE
    assert trust.retention_confidence(30) < trust.CONFIDENCE  # too few: said, not hidden


def test_detectors_score_far_images_higher_and_auroc_matches_sklearn():
    rng = np.random.default_rng(3)
    bank = rng.normal(size=(500, 16)) + 5.0
    near = rng.normal(size=(100, 16)) + 5.0
    far = rng.normal(size=(100, 16)) - 5.0
    d_near, d_far = trust.knn_distance(bank, near), trust.knn_distance(bank, far)
    assert d_far.min() > d_near.max()
    g = trust.Gaussian.fit(bank)
    assert g.score(far).min() > g.score(near).max()
    inside, outside = rng.normal(size=200), rng.normal(0.7, 1, size=150)
    expected = roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[inside, outside])
    assert trust.auroc(inside, outside) == pytest.approx(expected)


def test_pixel_statistics_move_under_every_shift(real_small):
    images = real_small.images[:60]
    base = trust.pixel_statistics(images)
    assert base.shape == (60, 23) and np.isfinite(base).all()
    np.testing.assert_allclose(trust.pixel_statistics(images, chunk=7), base)
    g = trust.Gaussian.fit(trust.pixel_statistics(real_small.images))
    inside = g.score(base)
    for name in SHIFTS:
        moved = shift(images, name, seed=0)
        assert moved.shape == images.shape and moved.dtype == np.uint8
        assert np.median(g.score(trust.pixel_statistics(moved))) > np.median(inside), name
    assert np.array_equal(shift(images, "stain", 4), shift(images, "stain", 4))
    with pytest.raises(ValueError, match="unknown shift"):
        shift(images, "fog")


def test_abstaining_on_the_least_confident_answers_fewer_images():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.99, 0.01]])
    rows = trust.abstention(probs, np.array([0, 1, 0, 0]))
    assert rows[0] == {"coverage": 1.0, "images": 4, "accuracy": 0.75}
    assert rows[-1]["images"] == 2 and rows[-1]["accuracy"] == 1.0
