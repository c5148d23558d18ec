"""load_dataset on a folder of class folders (PNG, JPEG, BMP; broken and odd files)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data import DataError, load_dataset


def save(path: Path, size: tuple[int, int] = (16, 16), mode: str = "RGB", value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 40, 200) + ((255,) if mode == "RGBA" else ())
    Image.new(mode, size, color).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "cells"
    save(root / "lymphocyte" / "a.png")
    save(root / "lymphocyte" / "b.JPG")
    save(root / "lymphocyte" / "c.bmp", mode="L")
    save(root / "basophil" / "x.jpeg", mode="RGB", value=30)
    save(root / "basophil" / "y.PNG", mode="RGBA")
    (root / "basophil" / "notes.txt").write_text("not an image")
    (root / "basophil" / ".hidden.png").write_bytes(b"not even an image")
    (root / ".cache").mkdir()
    return root


def test_folder_with_png_jpeg_bmp(tree: Path) -> None:
    ds = load_dataset(tree)
    assert ds.class_names == ("basophil", "lymphocyte")  # sorted folder names
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 1])
    assert ds.images.shape == (5, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.images[4, 0, 0].tolist() == [90, 90, 90]  # grayscale BMP -> RGB


def test_corrupt_image_is_named(tree: Path) -> None:
    bad = tree / "lymphocyte" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(DataError, match="cannot decode image") as info:
        load_dataset(tree)
    assert str(bad) in str(info.value)


def test_mixed_sizes_need_image_size(tree: Path) -> None:
    save(tree / "lymphocyte" / "big.png", size=(24, 20))
    with pytest.raises(DataError, match="different sizes") as info:
        load_dataset(tree)
    message = str(info.value)
    assert "--image-size" in message and "24x20" in message and "big.png" in message


def test_image_size_resizes_every_image(tree: Path) -> None:
    save(tree / "lymphocyte" / "big.png", size=(24, 20))
    ds = load_dataset(tree, image_size=10)
    assert ds.images.shape == (6, 10, 10, 3)


def test_no_class_folders(tmp_path: Path) -> None:
    save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="no class folders found") as info:
        load_dataset(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_class_folder_without_images(tree: Path) -> None:
    (tree / "monocyte").mkdir()
    (tree / "monocyte" / "readme.txt").write_text("todo")
    with pytest.raises(DataError, match="class folder has no images") as info:
        load_dataset(tree)
    assert str(tree / "monocyte") in str(info.value)


def test_single_class_folder_is_refused_before_decoding(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save(tmp_path / "neutrophil" / "a.png")
    save(tmp_path / "neutrophil" / "b.png")
    (tmp_path / "neutrophil" / "c.png").write_bytes(b"never decoded")
    caplog.set_level(logging.INFO, logger="search.data")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: only one class found: the only class folder is 'neutrophil' (3 images), "
        "but a classifier needs at least 2 classes. Check the folder layout: --data must be the "
        "folder that holds one sub-folder per class (<folder>/<class name>/<image>.png)."
    )
    assert "1 classes" not in caplog.text and "read " not in caplog.text


def test_read_log_counts_images_and_classes(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="search.data")
    load_dataset(tree)
    assert f"read 5 images in 2 classes from {tree}" in caplog.text


def test_data_one_level_too_high_says_which_folder_to_pass(tmp_path: Path) -> None:
    from PIL import Image

    inner = tmp_path / "export" / "cells"
    for name in ("basophil", "neutrophil"):
        (inner / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(inner / name / "0.png")
    with pytest.raises(DataError, match="one level too high") as caught:
        load_dataset(tmp_path / "export")
    assert f"--data {inner}" in str(caught.value)


def truncated_png(path: Path) -> None:
    """A real PNG cut in half, as an interrupted copy leaves it."""
    save(path, size=(40, 40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_every_unreadable_file_is_named_in_one_error(tree: Path) -> None:
    cut = tree / "basophil" / "cut.png"
    truncated_png(cut)
    text = tree / "lymphocyte" / "notes.png"
    text.write_text("a text file with an image's name")
    with pytest.raises(DataError) as info:
        load_dataset(tree)
    message = str(info.value)
    assert message.startswith(f"{tree}: 2 files cannot be read as images: ")
    assert f"{cut} (cannot decode image (OSError: image file is truncated" in message
    assert f"{text} (cannot decode image (UnidentifiedImageError: cannot identify image file)" in (
        message
    )
    assert message.endswith("Replace or delete those files (or move them out of the class folder).")


def test_many_unreadable_files_name_ten_and_count_the_rest(tree: Path) -> None:
    bad = [tree / "lymphocyte" / f"bad{i:02d}.png" for i in range(13)]
    for path in bad:
        path.write_bytes(b"not an image")
    with pytest.raises(DataError, match="13 files cannot be read as images") as info:
        load_dataset(tree, image_size=8)
    message = str(info.value)
    assert all(str(p) in message for p in bad[:10]) and str(bad[10]) not in message
    assert "; and 3 more." in message


def test_unreadable_files_are_named_before_mixed_sizes(tree: Path) -> None:
    save(tree / "lymphocyte" / "big.png", size=(24, 20))
    truncated_png(tree / "lymphocyte" / "z_cut.png")  # decoded after the size mismatch
    with pytest.raises(DataError, match="z_cut.png"):
        load_dataset(tree)


def test_non_square_images_are_said_to_be_stretched(
    tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save(tree / "lymphocyte" / "wide.png", size=(24, 16))
    save(tree / "basophil" / "tall.png", size=(16, 20))
    with caplog.at_level(logging.WARNING, logger="search.data"):
        ds = load_dataset(tree, image_size=12)
    assert ds.images.shape == (7, 12, 12, 3)
    (record,) = [r for r in caplog.records if "not square" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.name == "search.data.images"
    assert record.getMessage() == (
        f"warning: 2 images from {tree} are not square (e.g. 16x20, width x height) and are "
        "stretched to 12x12 squares (whole frame, no crop); crop them to squares first to keep "
        "their proportions"
    )


def test_square_images_and_native_size_warn_of_no_stretch(
    tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="search.data"):
        load_dataset(tree, image_size=12)  # 16 x 16 to 12 x 12: square stays square
        load_dataset(tree)
    assert "not square" not in caplog.text


def test_a_non_square_npz_is_said_to_be_stretched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "wide.npz"
    np.savez(path, images=np.zeros((6, 10, 14, 3), np.uint8), labels=np.arange(6) % 2)
    with caplog.at_level(logging.WARNING, logger="search.data"):
        assert load_dataset(path, image_size=10).images.shape == (6, 10, 10, 3)
    assert f"6 images from {path} are not square (e.g. 14x10" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="search.data"):
        assert load_dataset(path).images.shape == (6, 10, 14, 3)  # native size: not stretched
    assert "not square" not in caplog.text
