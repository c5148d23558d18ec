"""Fixtures for the data-layer tests: the real blood-cell file, demo data, small npz writers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from search.data import make_demo
from trainer.records import Dataset

REAL_NPZ_DEFAULT = Path(__file__).resolve().parents[3] / "../shared/data/bloodcells_96.npz"


@pytest.fixture(scope="session")
def bloodcells_npz() -> Path:
    """The real 96 x 96 blood-cell archive (``BLOODCELLS_NPZ`` overrides the shared copy)."""
    path = Path(os.environ.get("BLOODCELLS_NPZ", REAL_NPZ_DEFAULT)).resolve()
    if not path.is_file():
        pytest.skip(f"real data not found at {path}; set BLOODCELLS_NPZ to its path")
    return path


@pytest.fixture(scope="session")
def real_arrays(bloodcells_npz: Path) -> dict[str, np.ndarray]:
    """The real archive's arrays, read once per session."""
    with np.load(bloodcells_npz, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def demo_1600() -> Dataset:
    """The default demo data set (1,600 images, 64 x 64, seed 0), made once per session."""
    return make_demo(1600, 64, 0)


@pytest.fixture
def write_npz(tmp_path: Path) -> Callable[..., Path]:
    """Write arrays into ``tmp_path/<name>`` with np.savez and return the path."""

    def write(name: str = "data.npz", **arrays: np.ndarray) -> Path:
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    return write
