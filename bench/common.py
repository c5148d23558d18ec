"""Shared bits of the benchmark scripts: the real data, machine facts, writing results."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.records import Dataset  # noqa: E402

REAL = Path(os.environ.get("BLOODCELLS_NPZ", ROOT / "../shared/data/bloodcells_96.npz"))


def real_subset(n: int | None = None, seed: int = 0) -> Dataset:
    with np.load(REAL, allow_pickle=False) as z:
        images, labels, names = z["images"], z["labels"].astype(np.int64), z["class_names"]
    if n is not None and n < len(labels):
        rng = np.random.default_rng(seed)
        picked = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            picked.append(
                rng.choice(members, max(6, round(n * len(members) / len(labels))), replace=False)
            )
        index = np.sort(np.concatenate(picked))
        images, labels = images[index], labels[index]
    return Dataset(images, labels, tuple(str(c) for c in names))


def save_npz(data: Dataset, path: Path) -> Path:
    """Write a dataset in the layout ``--data PATH.npz`` reads (for scripts that run the CLI)."""
    np.savez(path, images=data.images, labels=data.labels, class_names=np.array(data.class_names))
    return path


def machine() -> str:
    import keras
    import tensorflow as tf

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, {time.strftime('%Y-%m-%d')}"
    )
