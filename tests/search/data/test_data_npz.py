"""load_dataset on .npz files: the generic layout (labels, one-hot, grayscale) and MedMNIST's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data import BLOODMNIST_CLASSES, DataError, load_dataset

WriteNpz = Callable[..., Path]


def tiny_images(n: int, size: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_generic_int_labels_and_class_names(write_npz: WriteNpz) -> None:
    images = tiny_images(9)
    path = write_npz(images=images, labels=np.arange(9) % 3, class_names=np.array(["a", "bb", "c"]))
    ds = load_dataset(path)
    assert ds.class_names == ("a", "bb", "c")
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, np.arange(9) % 3)
    np.testing.assert_array_equal(ds.images, images)


def test_generic_n_by_1_uint8_labels_without_names(write_npz: WriteNpz) -> None:
    path = write_npz(images=tiny_images(8), labels=(np.arange(8) % 4).astype(np.uint8)[:, None])
    ds = load_dataset(str(path))
    assert ds.class_names == ("class_0", "class_1", "class_2", "class_3")
    np.testing.assert_array_equal(ds.labels, np.arange(8) % 4)


def test_one_hot_labels(write_npz: WriteNpz) -> None:
    idx = np.array([2, 0, 1, 2, 1, 0])
    path = write_npz(images=tiny_images(6), labels=np.eye(3, dtype=np.float32)[idx])
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.labels, idx)
    assert ds.n_classes == 3


def test_labels_that_are_not_one_hot(write_npz: WriteNpz) -> None:
    labels = np.eye(3)[[0, 1, 2, 0]]
    labels[1, 2] = 1  # two classes in one row: multi-label
    path = write_npz(images=tiny_images(4), labels=labels)
    with pytest.raises(DataError, match=r"\[labels\].*not one-hot"):
        load_dataset(path)


@pytest.mark.parametrize("shape", [(6, 10, 10), (6, 10, 10, 1)])
def test_grayscale_images_become_rgb(write_npz: WriteNpz, shape: tuple[int, ...]) -> None:
    gray = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    ds = load_dataset(write_npz(images=gray, labels=np.arange(6) % 2))
    assert ds.images.shape == (6, 10, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(ds.images[..., c], gray.reshape(6, 10, 10))


def test_resize_to_image_size_uses_lanczos_on_the_whole_frame(write_npz: WriteNpz) -> None:
    images = tiny_images(4, size=20)
    ds = load_dataset(write_npz(images=images, labels=np.arange(4) % 2), image_size=8)
    assert ds.images.shape == (4, 8, 8, 3) and ds.images.dtype == np.uint8
    expected = Image.fromarray(images[3]).resize((8, 8), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(ds.images[3], np.asarray(expected))


def test_medmnist_layout_concatenates_train_val_test(write_npz: WriteNpz) -> None:
    splits = {"train": 8, "val": 4, "test": 4}
    arrays = {}
    for i, (split, n) in enumerate(splits.items()):
        arrays[f"{split}_images"] = tiny_images(n, seed=i)
        arrays[f"{split}_labels"] = (np.arange(n) % 8 + i).reshape(n, 1).astype(np.uint8) % 8
    ds = load_dataset(write_npz("bloodmnist_64.npz", **arrays))
    assert len(ds) == 16
    # A path is a path, whatever its name: only the "bloodmnist" keyword names BloodMNIST's
    # classes (test_data_bloodmnist.py), since MedMNIST files store no class names.
    assert ds.class_names == tuple(f"class_{i}" for i in range(8))
    np.testing.assert_array_equal(ds.images[:8], arrays["train_images"])
    np.testing.assert_array_equal(ds.images[12:], arrays["test_images"])
    np.testing.assert_array_equal(ds.labels[8:12], arrays["val_labels"].ravel())


@pytest.mark.parametrize("name", ["blood.npz", "bloodcells_96.npz", "BloodMNIST.npz", "x.npz"])
def test_a_file_without_class_names_gets_generic_names_whatever_its_name(
    write_npz: WriteNpz, name: str
) -> None:
    labels = np.arange(16) % 8  # 8 classes, as many as BloodMNIST has
    generic = tuple(f"class_{i}" for i in range(8))
    assert load_dataset(write_npz(name, images=tiny_images(16), labels=labels)).class_names == (
        generic
    )
    medmnist = write_npz(f"medmnist_{name}", train_images=tiny_images(16), train_labels=labels)
    assert load_dataset(medmnist).class_names == generic


def test_a_files_own_class_names_win(write_npz: WriteNpz) -> None:
    names = np.array([f"kind {i}" for i in range(8)])
    path = write_npz(
        "bloodmnist_64.npz", train_images=tiny_images(16), train_labels=np.arange(16) % 8,
        class_names=names,
    )  # fmt: skip
    assert load_dataset(path).class_names == tuple(names.tolist()) != BLOODMNIST_CLASSES


def test_medmnist_layout_without_blood_in_the_name_gets_generic_names(
    write_npz: WriteNpz,
) -> None:
    arrays = {"train_images": tiny_images(6), "train_labels": (np.arange(6) % 3)[:, None]}
    ds = load_dataset(write_npz("pathmnist.npz", **arrays))
    assert ds.class_names == ("class_0", "class_1", "class_2")


def test_medmnist_split_without_labels(write_npz: WriteNpz) -> None:
    path = write_npz(
        train_images=tiny_images(4), train_labels=np.arange(4) % 2, val_images=tiny_images(2)
    )
    with pytest.raises(DataError, match="'val_images' but no 'val_labels'") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_object_array_is_refused_and_named(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)
    np.savez(path, images=ragged, labels=np.array([0, 1]))
    with pytest.raises(DataError, match=r"array 'images' is an object \(pickled\) array") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_float_images_are_refused_with_a_conversion_hint(write_npz: WriteNpz) -> None:
    path = write_npz(images=tiny_images(4) / 255.0, labels=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"\[images\].*float64.*\* 255") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_missing_keys(write_npz: WriteNpz) -> None:
    with pytest.raises(DataError, match=r"no 'images' array \(keys found: \['x'\]\)"):
        load_dataset(write_npz(x=np.zeros(3)))
    with pytest.raises(DataError, match="has 'images' but no 'labels'"):
        load_dataset(write_npz("b.npz", images=tiny_images(2)))


def test_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip file")
    with pytest.raises(DataError, match=r"cannot read the file as an \.npz archive") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_missing_path_and_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file or folder.*'demo', 'bloodmnist'"):
        load_dataset(tmp_path / "nope.npz")
    csv = tmp_path / "labels.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        load_dataset(csv)


def test_bad_image_size() -> None:
    with pytest.raises(DataError, match="image_size=4 is below 8"):
        load_dataset("demo", image_size=4)
