"""fingerprint(): stable across processes, sensitive to any pixel, label or name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from search.data import fingerprint
from trainer.records import Dataset

ROOT = Path(__file__).resolve().parents[3]
SNIPPET = """
import numpy as np
from search.data import fingerprint
from trainer.records import Dataset
rng = np.random.default_rng(7)
ds = Dataset(rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), np.arange(10) % 2, ("a", "b"))
print(fingerprint(ds))
"""


def sample() -> Dataset:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    return Dataset(images, np.arange(10) % 2, ("a", "b"))


def test_stable_within_and_across_processes() -> None:
    ds = sample()
    value = fingerprint(ds)
    assert len(value) == 64 and int(value, 16) >= 0
    assert fingerprint(sample()) == value
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == value


def test_one_pixel_label_or_name_changes_it() -> None:
    ds = sample()
    base = fingerprint(ds)
    images = ds.images.copy()
    images[3, 4, 5, 1] ^= 1
    assert fingerprint(Dataset(images, ds.labels, ds.class_names)) != base
    labels = ds.labels.copy()
    labels[0] = 1
    assert fingerprint(Dataset(ds.images, labels, ds.class_names)) != base
    assert fingerprint(Dataset(ds.images, ds.labels, ("a", "c"))) != base
    assert fingerprint(ds.subset(np.arange(9, -1, -1))) != base  # order matters


def test_memory_layout_does_not_matter() -> None:
    ds = sample()
    strided = np.asfortranarray(ds.images)
    assert fingerprint(Dataset(strided, ds.labels, ds.class_names)) == fingerprint(ds)
