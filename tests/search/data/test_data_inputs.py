"""read_inputs (what search.predict reads): every unreadable input named in one error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data import DataError
from search.data.inputs import read_inputs

NAMES = ("a", "b")


def write_png(path: Path, size: int = 12, value: int = 80) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def truncated_png(path: Path) -> Path:
    data = write_png(path, size=40).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_folder_of_images_names_every_broken_one(tmp_path: Path) -> None:
    write_png(tmp_path / "good.png")
    cut = truncated_png(tmp_path / "cut.png")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(DataError) as info:
        read_inputs([str(tmp_path)], NAMES, 12)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: 2 files cannot be read as images: ")
    assert f"{cut} (cannot decode image (OSError" in message
    assert f"{text} (cannot decode image (UnidentifiedImageError" in message


def test_class_folders_name_every_broken_image(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "0.png")
    bad = [truncated_png(tmp_path / "a" / "1.png"), truncated_png(tmp_path / "b" / "0.png")]
    with pytest.raises(DataError, match="2 files cannot be read as images") as info:
        read_inputs([str(tmp_path)], NAMES, 12)
    assert all(str(p) in str(info.value) for p in bad)


def test_image_files_missing_wrong_and_broken_are_named_together(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png")
    missing = tmp_path / "gone.png"
    table = tmp_path / "labels.csv"
    table.write_text("a,b\n")
    cut = truncated_png(tmp_path / "cut.png")
    paths = [str(p) for p in (good, missing, table, cut)]
    with pytest.raises(DataError) as info:
        read_inputs(paths, NAMES, 12)
    message = str(info.value)
    assert message.startswith("--data: 3 files cannot be read as images: ")
    assert f"{missing} (no such file)" in message
    assert f"{table} (not an image file (.csv))" in message
    assert f"{cut} (cannot decode image" in message
    assert "image files end in .bmp, .jpeg, .jpg, .png" in message


def test_one_missing_file_reads_as_before(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_inputs([str(write_png(tmp_path / "ok.png")), str(tmp_path / "gone.png")], NAMES, 12)
    assert str(info.value).startswith(f"{tmp_path / 'gone.png'}: no such file. Pass an .npz")


def test_readable_files_still_read(tmp_path: Path) -> None:
    paths = [str(write_png(tmp_path / f"{i}.png", value=10 * i)) for i in range(3)]
    inputs = read_inputs(paths, NAMES, 12)
    assert inputs.images.shape == (3, 12, 12, 3) and inputs.sources == tuple(paths)
    assert inputs.images[2, 0, 0].tolist() == [20, 20, 20]


def test_a_folder_among_image_files_is_named_as_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "more"
    write_png(folder / "0.png")
    with pytest.raises(DataError) as info:
        read_inputs([str(folder), str(write_png(tmp_path / "ok.png"))], NAMES, 12)
    message = str(info.value)
    assert message.startswith(f"{folder}: a folder, given among other inputs.")
    assert "no such file" not in message and "folders are not read together" in message
