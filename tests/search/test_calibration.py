"""Expected calibration error and the reliability diagram search.predict writes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from search.reporting.calibration import expected_calibration_error, reliability, reliability_png


def test_ece_is_the_count_weighted_gap_between_accuracy_and_confidence() -> None:
    # 4 images at top probability 0.9 (3 right), 2 at 0.55 (both wrong): bins 13 and 8 of 15.
    probs = np.array([[0.9, 0.1]] * 4 + [[0.55, 0.45]] * 2)
    labels = np.array([0, 0, 0, 1, 1, 1])
    expected = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.0 - 0.55)
    assert np.isclose(expected_calibration_error(probs, labels), expected)
    table = reliability(probs, labels)
    assert table.counts.sum() == 6 and np.count_nonzero(table.counts) == 2
    assert len(table.as_dict()["counts"]) == 15


def test_a_calibrated_model_scores_near_zero_and_an_overconfident_one_does_not() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20_000)
    right = rng.random(20_000) < confidence  # right exactly as often as it says
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(right, 0, 1)
    assert expected_calibration_error(probs, labels) < 0.01
    sure = np.stack([np.full(20_000, 0.99), np.full(20_000, 0.01)], axis=1)
    assert expected_calibration_error(sure, labels) > 0.2


def test_the_reliability_diagram_is_a_png() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    png = reliability_png(reliability(probs, np.array([0, 1, 1])), "t")
    assert Image.open(io.BytesIO(png)).format == "PNG"
