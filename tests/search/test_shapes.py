"""The shapes users bring, each through ``search.run --budget`` end to end, then the exported model
through ``search.predict`` on the same images: grayscale (a folder of 1-channel PNGs, an
N x H x W .npz), non-square images, 2 classes and 52 classes, 28 px and 224 px, and a class with
fewer images than folds.

Real pixels throughout, from files scikit-learn ships: ``load_digits()`` (1,797 handwritten digits
scanned at 8 x 8, 17 grey levels; upscaled with Pillow) and ``load_sample_images()`` (two
photographs, 427 x 640: a temple in China and a flower), cut into regions, one class per region,
a few crops of each shifted by a few pixels. Every run is the quick space, 2 folds x 1 epoch, one
real Keras trial and the smallest budget that leaves the final model time to train; the long ones
are marked slow (CI runs them).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.search.cli import cli_env, run_cli

EXPORTED = ("model.keras", "config.json", "classes.json", "report.md", "history.json")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# Real images -------------------------------------------------------------------------------------


def digits(classes: Sequence[int], per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x size x size grey scans of handwritten digits (scikit-learn's 8 x 8 originals,
    0-16 scaled to 0-255 and upscaled bicubic) with their digit as label, ``per_class`` each."""
    from sklearn.datasets import load_digits

    found = load_digits()
    images, labels = [], []
    for digit in classes:
        for i in np.flatnonzero(found.target == digit)[:per_class]:
            scan = Image.fromarray((found.images[i] * (255 / 16)).round().astype(np.uint8), "L")
            images.append(np.asarray(scan.resize((size, size), Image.Resampling.BICUBIC)))
            labels.append(digit)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def photo_crops(
    n_classes: int, per_class: int, height: int, width: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x height x width x 3 crops of scikit-learn's two sample photographs: the photos are
    tiled into regions (each a class, spread over both photos) and each class gets ``per_class``
    crops of its region, shifted by up to 8 px."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    jitter = 8
    regions = [
        (p, top, left)
        for p, photo in enumerate(photos)
        for top in range(0, photo.shape[0] - height - jitter + 1, height + jitter)
        for left in range(0, photo.shape[1] - width - jitter + 1, width + jitter)
    ]
    assert len(regions) >= n_classes, f"the photos hold {len(regions)} regions of that size"
    picked = [regions[i] for i in np.linspace(0, len(regions) - 1, n_classes).round().astype(int)]
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, (p, top, left) in enumerate(picked):
        for _ in range(per_class):
            dy, dx = (int(v) for v in rng.integers(0, jitter + 1, size=2))
            images.append(photos[p][top + dy : top + dy + height, left + dx : left + dx + width])
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_folder(
    root: Path, images: np.ndarray, labels: np.ndarray, names: Sequence[str], suffix: str = ".png"
) -> Path:
    """One sub-folder per class name; grey N x H x W images are saved as 1-channel files."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}{suffix}")
    return root


# The commands ------------------------------------------------------------------------------------


def search(
    tmp_path: Path, data: Path, *extra: str, budget: str = "40s"
) -> tuple[subprocess.CompletedProcess, Path]:
    """``search.run --budget`` on ``data``: one real trial of the quick space, 2 folds x 1 epoch,
    then the final model exported to ``tmp_path/model``; its output and the export folder."""
    model = tmp_path / "model"
    out = run_cli(
        "--study", "quick", "--data", str(data), "--budget", budget,
        "--storage", f"sqlite:///{tmp_path / 's.db'}", "--export", str(model),
        "--folds", "2", "--epochs", "1", "--n-trials", "1", "--pruner", "none", *extra,
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert all((model / name).is_file() for name in EXPORTED), sorted(model.iterdir())
    return out, model


def predict(tmp_path: Path, model: Path, data: Path) -> tuple[dict, list[dict[str, str]]]:
    """``search.predict`` with the exported model on ``data``: its metrics and CSV rows."""
    out_csv, metrics = tmp_path / "predictions.csv", tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, "-m", "search.predict", "--model", str(model), "--data", str(data),
         "--out", str(out_csv), "--metrics-out", str(metrics)],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    with out_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return json.loads(metrics.read_text()), rows


def exported_config(model: Path) -> dict:
    config = json.loads((model / "config.json").read_text())
    assert json.loads((model / "classes.json").read_text()) == config["class_names"]
    return config


# The shapes --------------------------------------------------------------------------------------


def test_a_folder_of_grey_pngs_with_two_classes(tmp_path: Path) -> None:
    """60 real handwritten zeros and ones at 28 x 28, saved as 1-channel PNGs in two class
    folders, searched and trained at 32 px; the model tells them apart on the same files."""
    images, labels = digits([0, 1], 30, 28)
    data = write_folder(tmp_path / "digits", images, (labels > 0).astype(np.int64), ["zero", "one"])
    assert Image.open(next((data / "zero").iterdir())).mode == "L"
    out, model = search(tmp_path, data, "--image-size", "32")
    assert "read 60 images in 2 classes" in out.stderr
    config = exported_config(model)
    assert config["class_names"] == ["one", "zero"]  # sorted folder names
    assert config["image_size"] == 32
    metrics, rows = predict(tmp_path, model, data)
    assert metrics["n_images"] == len(rows) == 60 == metrics["resized"]  # 28 px to the model's 32
    assert {r["true"] for r in rows} == {"zero", "one"}
    assert metrics["accuracy"] >= 0.9  # zeros and ones are easy, and these are its own images


def test_a_class_with_fewer_images_than_folds_is_named_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """Real digits: ten zeros, ten ones and a single seven, with --folds 2; then two sevens with
    --folds 3. Each is refused before anything is written, naming the class and what to do."""
    images, labels = digits([0, 1, 7], 10, 28)
    keep = np.flatnonzero(labels != 7)[:20].tolist() + np.flatnonzero(labels == 7)[:1].tolist()
    names = {0: "zero", 1: "one", 7: "seven"}
    data = tmp_path / "digits"
    for i in keep:
        (data / names[int(labels[i])]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(data / names[int(labels[i])] / f"{i}.png")
    work = tmp_path / "work"
    work.mkdir()
    common = (
        "--study", "quick", "--data", str(data), "--budget", "30s",
        "--storage", f"sqlite:///{work / 's.db'}", "--export", str(work / "model"),
        "--epochs", "1", "--image-size", "32",
    )  # fmt: skip
    out = run_cli(*common, "--folds", "2", cwd=work, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert (
        f"error: {data}: class 'seven' has 1 image, fewer than the 2 folds. Every class needs as "
        "many images as folds (2 here; --folds 2 is the fewest): add images of that class"
        in out.stderr
    )
    assert list(work.iterdir()) == []  # no database, no artifacts, no model folder

    seven = np.flatnonzero(labels == 7)[1]
    Image.fromarray(images[seven]).save(data / "seven" / f"{seven}.png")
    out = run_cli(*common, "--folds", "3", cwd=work, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "class 'seven' has 2 images, fewer than the 3 folds" in out.stderr
    assert "Use --folds 2 or fewer, or add images of that class" in out.stderr
    assert list(work.iterdir()) == []


@pytest.mark.slow
def test_a_grey_n_by_h_by_w_npz_of_28px_digits_on_the_default_path(
    tmp_path: Path,
) -> None:
    """150 real digits (15 of each of 10 classes) as an N x 28 x 28 uint8 .npz with class names,
    on the default path (no --image-size): searched at the quick space's 64 px; the final model,
    which trains at the data's own size but never below the search's, also at 64 px."""
    images, labels = digits(range(10), 15, 28)
    assert images.shape == (150, 28, 28)
    data = tmp_path / "digits28.npz"
    np.savez(data, images=images, labels=labels, class_names=np.array(DIGIT_NAMES))
    out, model = search(tmp_path, data, budget="60s")
    assert "at 64px on 150 images" in out.stderr
    config = exported_config(model)
    assert config["class_names"] == list(DIGIT_NAMES)
    assert config["image_size"] == 64
    metrics, rows = predict(tmp_path, model, data)
    assert metrics["n_images"] == len(rows) == 150 == metrics["resized"]  # 28 px to 64 px
    assert 0.0 <= metrics["accuracy"] <= 1.0 and len(metrics["confusion"]["matrix"]) == 10


@pytest.mark.slow
def test_fifty_two_classes_of_photo_crops(tmp_path: Path) -> None:
    """52 classes, each a region of one of the two sample photographs, 4 crops of 32 x 32 each
    (208 images) in 52 class folders, searched and trained at 32 px."""
    images, labels = photo_crops(52, 4, 32, 32)
    names = [f"region_{i:02d}" for i in range(52)]
    data = write_folder(tmp_path / "regions", images, labels, names)
    out, model = search(tmp_path, data, "--image-size", "32")
    assert "read 208 images in 52 classes" in out.stderr
    config = exported_config(model)
    assert config["class_names"] == names and config["image_size"] == 32
    metrics, rows = predict(tmp_path, model, data)
    assert metrics["n_images"] == len(rows) == 208
    assert len(metrics["confusion"]["matrix"]) == 52
    assert len([k for k in rows[0] if k.startswith("p_")]) == 52  # a probability per class


@pytest.mark.slow
def test_224px_photo_crops_train_the_final_model_at_224(tmp_path: Path) -> None:
    """4 classes of 224 x 224 crops of the sample photographs (6 each, 24 images) in an .npz, on
    the default path: searched at the quick space's 64 px, the final model at 224 px."""
    images, labels = photo_crops(4, 6, 224, 224)
    data = tmp_path / "photos224.npz"
    names = ["temple_left", "temple_right", "flower_left", "flower_right"]
    np.savez(data, images=images, labels=labels, class_names=np.array(names))
    out, model = search(tmp_path, data, budget="60s")
    config = exported_config(model)
    assert config["class_names"] == names and config["image_size"] == 224
    assert "at 64px on 24 images" in out.stderr  # the search's own size
    metrics, rows = predict(tmp_path, model, data)
    assert metrics["n_images"] == len(rows) == 24
    assert metrics["resized"] == 0  # the model takes the images' own 224 px


@pytest.mark.slow
def test_non_square_photo_crops_are_said_to_be_stretched(tmp_path: Path) -> None:
    """6 classes of 64 x 48 (width x height) JPEG crops of the sample photographs, 8 each: the run
    warns that all 48 are stretched to squares, trains at 32 px, and the model predicts on them."""
    images, labels = photo_crops(6, 8, 48, 64)
    names = [f"region_{i}" for i in range(6)]
    data = write_folder(tmp_path / "wide", images, labels, names, suffix=".jpg")
    out, model = search(tmp_path, data, "--image-size", "32")
    assert (
        f"warning: 48 images from {data} are not square (e.g. 64x48, width x height) and are "
        "stretched to 32x32 squares" in out.stderr
    )
    config = exported_config(model)
    assert config["class_names"] == names and config["image_size"] == 32
    metrics, rows = predict(tmp_path, model, data)
    assert metrics["n_images"] == len(rows) == 48 == metrics["resized"]


@pytest.mark.slow
def test_non_square_images_larger_than_the_search_on_the_default_path(tmp_path: Path) -> None:
    """4 classes of 112 x 80 (width x height) crops of the sample photographs, 8 each, in an .npz,
    without --image-size: searched at the quick space's 64 px (stretched, and said so); the final
    model trains at the data's own size, a square one, and its export predicts on the images."""
    images, labels = photo_crops(4, 8, 80, 112, seed=1)
    names = [f"region_{i}" for i in range(4)]
    data = tmp_path / "wide.npz"
    np.savez(data, images=images, labels=labels, class_names=np.array(names))
    out, model = search(tmp_path, data, budget="60s")
    assert f"warning: 32 images from {data} are not square (e.g. 112x80" in out.stderr
    config = exported_config(model)
    assert config["class_names"] == names and config["image_size"] >= 80
    metrics, rows = predict(tmp_path, model, data)
    assert metrics["n_images"] == len(rows) == 32 == metrics["resized"]
