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


def test_single_class_says_which_how_many_and_what_to_do() -> None:
    err = fails(make(labels=np.zeros(12, np.int64), classes=1))
    assert str(err) == (
        f"{SRC} [labels]: only one class found: all 12 images are 'c0', but a classifier needs "
        "at least 2 classes. Check the labels: each image needs its class index 0..C-1, and at "
        "least 2 classes must have images."
    )


def test_single_class_among_several_names_lists_the_empty_ones_once() -> None:
    err = fails(make(labels=np.zeros(12, np.int64), classes=3))
    assert err.problem == (
        "only one class found: all 12 images are 'c0' (class_names also lists 'c1', 'c2', "
        "which have no images), but a classifier needs at least 2 classes"
    )
    one = fails(make(n=1, labels=np.zeros(1, np.int64), classes=1))
    assert one.problem.startswith("only one class found: the only image is 'c0', but ")


def test_class_with_fewer_images_than_folds() -> None:
    labels = np.array([0] * 6 + [1] * 4 + [2] * 2)
    err = fails(make(labels=labels), n_folds=5)
    assert err.problem == (
        "2 classes have fewer images than the 5 folds: 'c2' (2 images), 'c1' (4 images)"
    )
    assert err.fix.startswith("use --folds 2 or fewer, or add images of those classes; ")
    labels = np.array([0] * 6 + [1] * 6 + [2] * 1)
    err = fails(make(n=13, labels=labels), n_folds=5)
    assert err.problem == "class 'c2' has 1 image, fewer than the 5 folds"  # named once
    assert err.fix.startswith("every class needs as many images as folds (5 here; --folds 2 is ")
    assert "images of that class;" in err.fix


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


def test_counts_in_messages_are_singular_for_one() -> None:
    labels = np.arange(12) % 3
    labels[5] = -1
    err = fails(make(labels=labels))
    assert err.problem == "negative label -1 at index 5"  # no "(1 negative labels in all)"
    labels[6] = -2
    assert "(2 negative labels in all)" in fails(make(labels=labels)).problem
    err = fails(make(n=2, labels=np.array([0]), classes=2))
    assert err.problem == "2 images but 1 label"
    err = fails(make(n=4, labels=np.array([0, 1, 0, 1]), class_names=("a",)))
    assert err.problem == "label 1 at index 1, but only 1 class name ('a')"
    err = fails(make(class_names=("a", "b", "a")))
    assert err.problem == "duplicate class name 'a'"
    err = fails(make(class_names=("a", "b", "a", "b")))
    assert err.problem == "duplicate class names 'a', 'b'"
    err = fails(make(n=8, labels=np.array([0, 1] * 4), class_names=("a", "b", "c")))
    assert err.problem == "3 class names but labels use 2 classes: 'c' (index 2) has no images"
