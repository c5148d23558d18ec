"""make_demo(): deterministic, all classes, imbalanced like PBC, and learnable but not trivial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from search.data import BLOODMNIST_CLASSES, DataError, fingerprint, load_dataset, make_demo
from search.data.classes import PBC_CLASS_COUNTS
from search.data.demo import class_counts
from trainer.records import Dataset


def test_same_seed_gives_identical_bytes_and_other_seeds_differ() -> None:
    a, b = make_demo(48, 32, seed=3), make_demo(48, 32, seed=3)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    c = make_demo(48, 32, seed=4)
    assert a.images.tobytes() != c.images.tobytes()


def test_same_seed_gives_the_same_data_in_another_process() -> None:
    code = (
        "from search.data import make_demo, fingerprint; print(fingerprint(make_demo(16, 16, 5)))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == fingerprint(make_demo(16, 16, 5))


def test_default_demo_has_every_class_in_pbc_proportions(demo_1600: Dataset) -> None:
    ds = demo_1600
    assert ds.images.shape == (1600, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert ds.class_names == BLOODMNIST_CLASSES
    counts = np.bincount(ds.labels, minlength=8)
    expected = np.asarray(PBC_CLASS_COUNTS) / sum(PBC_CLASS_COUNTS) * 1600
    assert np.all(np.abs(counts - expected) <= 1.5)
    assert counts.argmax() == BLOODMNIST_CLASSES.index("neutrophil")
    assert not np.all(np.diff(ds.labels) >= 0)  # shuffled, not grouped by class


def test_images_look_like_a_smear(demo_1600: Dataset) -> None:
    images = demo_1600.images.astype(np.float32)
    corners = np.concatenate([images[:, :4, :4], images[:, -4:, -4:]], axis=1).mean(axis=(1, 2))
    assert corners.mean() > 170  # pale background (plus pale erythrocytes)
    not_platelet = demo_1600.labels != BLOODMNIST_CLASSES.index("platelet")
    centre = images[not_platelet, 24:40, 24:40].min(axis=(1, 2)).mean(axis=0)
    assert centre[1] < 110  # a dark (purple) nucleus near the middle


def test_class_counts_sum_and_floor() -> None:
    assert sum(class_counts(1600)) == 1600
    assert class_counts(8) == (1,) * 8
    assert min(class_counts(20)) >= 1 and sum(class_counts(20)) == 20
    with pytest.raises(DataError, match="at least 8"):
        make_demo(5)


def test_demo_spec_uses_the_requested_size() -> None:
    ds = load_dataset("demo", image_size=24)
    assert ds.images.shape == (1600, 24, 24, 3)


def _features(images: np.ndarray) -> np.ndarray:
    """16 x 16 block means plus 16-bin colour histograms."""
    n, s = images.shape[:2]
    block = s // 16
    small = images.reshape(n, 16, block, 16, block, 3).mean(axis=(2, 4)).reshape(n, -1) / 255
    bins = (images // 16).reshape(n, -1, 3).astype(np.int64) + np.arange(3) * 16
    hist = np.stack([np.bincount(b.ravel(), minlength=48) for b in bins]) / (s * s)
    return np.concatenate([small, hist], axis=1)


def test_a_quick_model_learns_it(demo_1600: Dataset) -> None:
    x, y = _features(demo_1600.images), demo_1600.labels
    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    model.fit(x[:1000], y[:1000])
    accuracy = float((model.predict(x[1000:]) == y[1000:]).mean())
    assert accuracy > 0.6, accuracy  # chance is 1/8; a CNN should do far better
