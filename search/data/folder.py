"""Read a folder of class folders: ``root/<class name>/<image>.png|.jpg|.jpeg|.bmp``.

Class names are the sorted sub-folder names (class index = position in that order). Only the
files directly inside each class folder are read; extensions are matched case-insensitively,
other files and anything hidden (a name starting with ".") are ignored. Every image is decoded
with Pillow and converted to RGB; with ``image_size`` it is resized right after decoding (Lanczos,
whole frame, no crop), so large originals are never all held in memory at once, and a warning
says how many of them were not square (stretched). Every file is tried before an error: one
error names all the files that do not decode.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from search.data.errors import DataError
from search.data.images import decode_each, resize_image, stretch_warning
from search.text import counted
from trainer.records import Dataset

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_LAYOUT = "expected <folder>/<class name>/<image>.png (or .jpg, .jpeg, .bmp)"

log = logging.getLogger(__name__)


def read_folder(root: Path, image_size: int | None) -> Dataset:
    """Decode every image under ``root``'s class folders into one Dataset.

    A single class folder is refused before any image is decoded: nothing can be learnt from it.
    """
    files = list_images(root)
    class_names = tuple(files)
    if len(class_names) == 1:
        (only,) = class_names
        raise DataError(
            f"only one class found: the only class folder is '{only}' "
            f"({counted(len(files[only]), 'image')}), but a classifier needs at least 2 classes",
            str(root),
            "check the folder layout: --data must be the folder that holds one sub-folder per "
            "class (<folder>/<class name>/<image>.png)",
        )
    labels = [index for index, name in enumerate(class_names) for _ in files[name]]
    paths = [path for name in class_names for path in files[name]]
    images: list[np.ndarray] = []
    first_of_shape: dict[tuple[int, ...], Path] = {}
    stretched, example = 0, (0, 0)
    for path, image in decode_each(paths, str(root)):
        if image_size is not None:
            if image.shape[0] != image.shape[1]:
                example = example if stretched else (image.shape[0], image.shape[1])
                stretched += 1
            image = resize_image(image, image_size)
        elif len(first_of_shape) < 2:
            first_of_shape.setdefault(image.shape, path)
        if len(first_of_shape) > 1:
            images.clear()  # decoding goes on only to name every unreadable file first
            continue
        images.append(image)
    if len(first_of_shape) > 1:
        raise _mixed_sizes(root, first_of_shape)
    if image_size is not None:
        stretch_warning(stretched, example, image_size, str(root))
    # Said with the size: a --budget run reads the folder twice, for the search and at native size.
    height, width = images[0].shape[:2]
    log.info(
        "read %s in %s from %s, %s",
        counted(len(images), "image"),
        counted(len(class_names), "class"),
        root,
        f"resized to {image_size} px"
        if image_size is not None
        else f"at native size {width}x{height} px",
    )
    return Dataset(np.stack(images), np.asarray(labels, dtype=np.int64), class_names)


def list_images(root: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for each non-hidden sub-folder of ``root``, sorted."""
    if not root.is_dir():
        raise DataError("no such folder", str(root), "check the --data path")
    class_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not class_dirs:
        raise DataError(
            "no class folders found",
            str(root),
            f"{_LAYOUT}; one sub-folder per class",
        )
    files: dict[str, list[Path]] = {}
    for class_dir in class_dirs:
        found = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            nested = [p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
            if nested:
                raise DataError(
                    f"class folder holds folders ({', '.join(sorted(p.name for p in nested)[:3])}"
                    f"{', ...' if len(nested) > 3 else ''}), not images: --data looks one level "
                    "too high",
                    str(class_dir),
                    f"pass --data {class_dir} if its sub-folders are the classes ({_LAYOUT})",
                )
            raise DataError(
                "class folder has no images (.png, .jpg, .jpeg or .bmp)",
                str(class_dir),
                "add images to it or remove the folder",
            )
        files[class_dir.name] = found
    return files


def _mixed_sizes(root: Path, first_of_shape: dict[tuple[int, ...], Path]) -> DataError:
    examples = "; ".join(
        f"{shape[1]}x{shape[0]} e.g. {path.relative_to(root)}"
        for shape, path in first_of_shape.items()
    )
    return DataError(
        f"images have different sizes (width x height: {examples})",
        str(root),
        "pass --image-size N to resize every image to N x N (Lanczos, whole frame, no crop)",
    )
