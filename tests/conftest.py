"""Shared fixtures: the real blood-cell images (from ../shared/data, never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trainer.records import Dataset

REAL_NPZ_DEFAULT = Path(__file__).resolve().parents[1] / "../shared/data/bloodcells_96.npz"


def require(condition: bool, reason: str) -> None:
    """Skip when something outside the project is missing; under CI=true that is a failure."""
    if condition:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def bloodcells_npz() -> Path:
    """The real 96 x 96 blood-cell archive (``BLOODCELLS_NPZ`` overrides the shared copy)."""
    path = Path(os.environ.get("BLOODCELLS_NPZ", REAL_NPZ_DEFAULT)).resolve()
    require(path.is_file(), f"real data not found at {path}; set BLOODCELLS_NPZ to its path")
    return path


@pytest.fixture(scope="session")
def real_arrays(bloodcells_npz: Path) -> dict[str, np.ndarray]:
    """The real archive's arrays, read once per session."""
    with np.load(bloodcells_npz, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def stratified_subset(arrays: dict[str, np.ndarray], n: int, seed: int = 0) -> Dataset:
    """``n`` real images with every class in proportion (at least 6 per class)."""
    labels = arrays["labels"].astype(np.int64)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = max(6, round(n * len(members) / len(labels)))
        picked.append(rng.choice(members, size=min(take, len(members)), replace=False))
    index = np.sort(np.concatenate(picked))
    return Dataset(
        arrays["images"][index], labels[index], tuple(str(c) for c in arrays["class_names"])
    )


@pytest.fixture(scope="session")
def real_small(real_arrays: dict[str, np.ndarray]) -> Dataset:
    """About 600 real images, stratified: enough for a 2-fold trial to learn something."""
    return stratified_subset(real_arrays, 600)
