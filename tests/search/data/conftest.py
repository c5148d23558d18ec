"""Fixtures for the data-layer tests: the real blood-cell file, demo data, small npz writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from search.data import make_demo
from trainer.records import Dataset


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
