"""validate(): one test per kind of unusable data set; each message names what and where."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from search.data import DataError, validate
from trainer.records import Dataset

SRC = "/data/cells.npz"


def make(n: int = 12, classes: int = 3, **over: object) -> Dataset:
    rng = np.random.default_rng(0)
    fields = {
        "images": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
        "labels": np.arange(n, dtype=np.int64) % classes,
        "class_names": tuple(f"c{i}" for i in range(classes)),
    }
    fields.update(over)
    return Dataset(**fields)  # type: ignore[arg-type]


def fails(ds: Dataset, *parts: str, n_folds: int | None = None) -> DataError:
    with pytest.raises(DataError) as info:
        validate(ds, n_folds=n_folds, source=SRC)
    message = str(info.value)
    assert SRC in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return info.value


def test_valid_dataset_passes_and_normalises_labels_to_int64() -> None:
    ds = make(labels=(np.arange(12) % 3).astype(np.int32), class_names=["a", "b", "c"])
    out = validate(ds, n_folds=4, source=SRC)
    assert out.labels.dtype == np.int64
    assert out.class_names == ("a", "b", "c")
    assert out.images is ds.images


def test_wrong_image_rank() -> None:
    fails(make(images=np.zeros((12, 8, 8), np.uint8)), "[images]", "(12, 8, 8)", "N x H x W x 3")


def test_wrong_image_dtype_says_how_to_convert() -> None:
    err = fails(
        make(images=np.full((12, 8, 8, 3), 0.5, np.float32)), "[images]", "float32", "uint8"
    )
    assert "(images * 255).round().astype(np.uint8)" in str(err)
    err = fails(make(images=np.full((12, 8, 8, 3), 200.0)), "float64")
    assert "images.round().astype(np.uint8)" in str(err)


def test_labels_and_images_of_different_lengths() -> None:
    fails(make(labels=np.arange(10) % 3), "12 images but 10 labels")


def test_negative_labels() -> None:
    labels = np.arange(12) % 3
    labels[5] = -1
    fails(make(labels=labels), "[labels]", "negative label -1 at index 5")


def test_non_integer_labels() -> None:
    labels = (np.arange(12) % 3).astype(np.float64)
    labels[4] = 1.5
    fails(make(labels=labels), "[labels]", "float64", "non-integer value 1.5 at index 4")
    err = fails(make(labels=(np.arange(12) % 3).astype(np.float32)), "float32")
    assert "labels.astype(np.int64)" in str(err)


def test_labels_of_wrong_rank() -> None:
    fails(make(labels=(np.arange(12) % 3).reshape(12, 1)), "[labels]", "(12, 1)", "reshape(-1)")


def test_single_class() -> None:
    fails(make(labels=np.zeros(12, np.int64), classes=1), "only one class ('c0', 12 images)")


def test_class_with_fewer_images_than_folds() -> None:
    labels = np.array([0] * 6 + [1] * 4 + [2] * 2)
    err = fails(make(labels=labels), "class 'c2' has 2 images", "fewer than the 5 folds", n_folds=5)
    assert "'c1' 4" in str(err)
    assert "--folds 2" in str(err)


def test_label_beyond_class_names() -> None:
    labels = np.arange(12) % 3
    labels[7] = 5
    fails(make(labels=labels), "[class_names]", "label 5 at index 7", "only 3 class names")


def test_class_name_without_images() -> None:
    ds = make(labels=np.arange(12) % 3, class_names=("a", "b", "c", "d"))
    fails(ds, "[class_names]", "4 class names but labels use 3 classes", "'d' (index 3)")


def test_empty_dataset() -> None:
    ds = make(images=np.zeros((0, 8, 8, 3), np.uint8), labels=np.zeros(0, np.int64))
    fails(ds, "[images]", "empty")


def test_error_survives_pickling_with_its_parts() -> None:
    err = DataError("bad thing", "file.npz", "do this")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "file.npz: bad thing. Do this."
    assert (back.problem, back.where, back.fix) == ("bad thing", "file.npz", "do this")
    assert isinstance(back, ValueError)
