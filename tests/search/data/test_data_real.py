"""The real 96 x 96 blood-cell archive through the loaders (read from shared/data, never copied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from search.data import BLOODMNIST_CLASSES, load_dataset, validate
from trainer.records import Dataset

README_COUNTS = [227, 583, 290, 542, 227, 266, 624, 440]  # shared/data/README.md


def test_real_archive_loads_with_its_classes(bloodcells_npz: Path) -> None:
    ds = load_dataset(bloodcells_npz)
    assert ds.images.shape == (3199, 96, 96, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert ds.class_names == BLOODMNIST_CLASSES
    assert np.bincount(ds.labels).tolist() == README_COUNTS
    validate(ds, n_folds=5, source=str(bloodcells_npz))


def test_real_subset_resized(real_arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    keep = np.concatenate([np.flatnonzero(real_arrays["labels"] == c)[:4] for c in range(8)])
    path = tmp_path / "subset.npz"
    np.savez(
        path,
        images=real_arrays["images"][keep],
        labels=real_arrays["labels"][keep],
        class_names=real_arrays["class_names"],
    )
    ds = load_dataset(path, image_size=64)
    assert ds.images.shape == (32, 64, 64, 3)
    assert np.bincount(ds.labels).tolist() == [4] * 8
    first = Image.fromarray(real_arrays["images"][keep[0]])
    expected = np.asarray(first.resize((64, 64), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(ds.images[0], expected)


def test_real_images_as_a_folder_of_jpegs(
    real_arrays: dict[str, np.ndarray], tmp_path: Path
) -> None:
    names = [str(n) for n in real_arrays["class_names"]]
    for c, name in enumerate(names):
        for j, i in enumerate(np.flatnonzero(real_arrays["labels"] == c)[:2]):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(real_arrays["images"][i]).save(tmp_path / name / f"{j}.jpg", quality=95)
    ds: Dataset = load_dataset(tmp_path)
    assert ds.class_names == BLOODMNIST_CLASSES  # sorted folder names = BloodMNIST order
    assert ds.images.shape == (16, 96, 96, 3)
    original = real_arrays["images"][np.flatnonzero(real_arrays["labels"] == 0)[0]]
    assert np.abs(ds.images[0].astype(int) - original).mean() < 6  # JPEG round trip
