"""Shared bits of the benchmark scripts: the real data, machine facts, writing results."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.records import Dataset  # noqa: E402

REAL = Path(os.environ.get("BLOODCELLS_NPZ", ROOT / "../shared/data/bloodcells_96.npz"))


def per_class_sample(labels: np.ndarray, count: Callable[[int], int], seed: int) -> np.ndarray:
    """Sorted positions of ``labels``: ``count(class size)`` drawn from every class, seeded."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(rng.choice(members, count(len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def subset_index(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A stratified sample of about ``n`` positions of ``labels`` (at least 6 per class)."""
    return per_class_sample(labels, lambda m: min(m, max(6, round(n * m / len(labels)))), seed)


def real_subset(n: int | None = None, seed: int = 0) -> Dataset:
    with np.load(REAL, allow_pickle=False) as z:
        images, labels, names = z["images"], z["labels"].astype(np.int64), z["class_names"]
    if n is not None and n < len(labels):
        index = subset_index(labels, n, seed)
        images, labels = images[index], labels[index]
    return Dataset(images, labels, tuple(str(c) for c in names))


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) index arrays: ``fraction`` of every class held out, seeded."""
    held = per_class_sample(labels, lambda m: round(fraction * m), seed)
    return np.setdiff1d(np.arange(len(labels)), held), held


def other_subset(n: int, seed: int = 1) -> Dataset:
    """About ``n`` real images that are neither in ``real_subset(900)`` (replay table A's) nor in
    bench/end_to_end.py's held-out quarter (seed 0): the images of replay table B."""
    data = real_subset()
    rest, _ = stratified_split(data.labels, 0.25, 0)
    free = np.setdiff1d(rest, subset_index(data.labels, 900, 0))
    return data.subset(free[subset_index(data.labels[free], n, seed)])


def tuning_subset(n: int, seed: int = 1) -> Dataset:
    """About ``n`` of replay table A's images (``real_subset(900)``, which constants were chosen
    on) that are not in bench/end_to_end.py's held-out quarter, and so none of table B's."""
    data = real_subset()
    rest, _ = stratified_split(data.labels, 0.25, 0)
    free = np.intersect1d(rest, subset_index(data.labels, 900, 0))
    return data.subset(free[subset_index(data.labels[free], n, seed)])


def table_data(setup: dict) -> Dataset:
    """The images a replay table (bench/hpo_table.py) was recorded on."""
    name = setup.get("dataset", "bloodcells")
    if name != "bloodcells":  # another kind of images: a stratified subset of bench/datasets.py's
        from datasets import LOADERS

        full = LOADERS[name]()
        return full.subset(subset_index(full.labels, int(setup["images"]), 0))
    where = setup.get("images_from", "all")
    if where == "other":
        return other_subset(int(setup["images"]))
    if where == "tuning":
        return tuning_subset(int(setup["images"]))
    return real_subset(int(setup["images"]))


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
