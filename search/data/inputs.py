"""Image input for prediction: read what ``search.predict`` is pointed at.

Inputs (``read_inputs``): one ``.npz`` (``images``, optional ``labels`` and ``class_names``, or
the MedMNIST layout), one folder of class folders (labels from the folder names), one folder of
loose images (no labels), one or more image files, or the keywords ``demo``, ``demo-orientation``
and ``bloodmnist``.
Labels are mapped to the model's classes by name (an npz without ``class_names`` holds indices
in the model's class order); a name the model does not know is an error.

Images of another size than the model's are resized (Pillow Lanczos, whole frame, no crop, as
the loaders do) with one logged warning, or refused with ``resize=False``. numpy + Pillow only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.data import DataError, load_dataset
from search.data.folder import IMAGE_SUFFIXES, list_images
from search.data.images import decode_each, resize_image, to_rgb
from search.data.npz import read_npz
from search.text import counted

log = logging.getLogger(__name__)

KEYWORDS = ("demo", "demo-orientation", "bloodmnist")
_KINDS = "an .npz, a folder of class folders, a folder of images, or image files"
_FIXES = (
    f"replace or delete the file, or pass {_KINDS}",
    f"replace or delete those files, or pass {_KINDS}",
)
_FIXES_WITH_SUFFIXES = (
    f"pass {_KINDS}; image files end in {', '.join(sorted(IMAGE_SUFFIXES))}; several .npz "
    "files or folders are not read together",
) * 2


@dataclass(frozen=True)
class Inputs:
    """Images ready for the model (uint8 N x S x S x 3), where each came from, labels if known."""

    images: np.ndarray
    sources: tuple[str, ...]  # a file path, or "<file.npz>[i]"
    labels: np.ndarray | None  # int64 indices into the model's classes
    resized: int  # how many images were resized to the model's size


def read_inputs(
    paths: Sequence[str], class_names: Sequence[str], size: int, *, resize: bool = True
) -> Inputs:
    """Read ``paths`` (see the module docstring) for a model of ``class_names`` at ``size`` px.

    Raises DataError naming the file for anything unreadable, an unknown class, or (with
    ``resize=False``) an image of the wrong size.
    """
    if not paths:
        raise DataError("no input given", "--data", f"pass {_KINDS}")
    names = tuple(class_names)
    first = Path(paths[0]).expanduser()
    if len(paths) == 1 and paths[0].strip().lower() in KEYWORDS:
        ds = load_dataset(paths[0].strip().lower(), image_size=size)
        labels = _map_names(ds.labels, ds.class_names, names, paths[0])
        sources = tuple(f"{paths[0]}[{i}]" for i in range(len(ds)))
        return Inputs(ds.images, sources, labels, 0)
    if len(paths) == 1 and first.is_dir():
        return _read_dir(first, names, size, resize)
    if len(paths) == 1 and first.suffix.lower() == ".npz":
        return _read_npz(first, names, size, resize)
    files, bad = [], []
    for path in (Path(p).expanduser() for p in paths):
        if path.is_dir():
            bad.append((str(path), "a folder, given among other inputs"))
        elif not path.is_file():
            bad.append((str(path), "no such file"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            bad.append((str(path), f"not an image file ({path.suffix or 'no extension'})"))
        else:
            files.append(path)
    return _decode_files(files, None, size, resize, unreadable=bad)


def _read_dir(root: Path, names: tuple[str, ...], size: int, resize: bool) -> Inputs:
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs:
        by_class = list_images(root)
        unknown = sorted(set(by_class) - set(names))
        if unknown:
            raise DataError(
                f"class folders {unknown} are not classes of the model",
                str(root),
                f"the model knows {', '.join(names)}: rename or remove those folders",
            )
        files = [f for cls in by_class for f in by_class[cls]]
        labels = [names.index(cls) for cls in by_class for _ in by_class[cls]]
        labelled = np.asarray(labels, dtype=np.int64)
        return _decode_files(files, labelled, size, resize, where=str(root))
    loose = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not loose:
        raise DataError(
            "no images and no class folders found",
            str(root),
            "put .png/.jpg/.jpeg/.bmp files in it, or one sub-folder per class",
        )
    return _decode_files(loose, None, size, resize, where=str(root))


def _decode_files(
    files: Sequence[Path],
    labels: np.ndarray | None,
    size: int,
    resize: bool,
    *,
    where: str = "--data",
    unreadable: Sequence[tuple[str, str]] = (),
) -> Inputs:
    """Decode ``files``; one DataError names every file that cannot be read (``unreadable``:
    those already found, e.g. missing), after all the others were tried."""
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    resized: dict[tuple[int, int], int] = {}
    fixes = _FIXES_WITH_SUFFIXES if unreadable else _FIXES
    for i, (path, image) in enumerate(decode_each(files, where, fixes, unreadable)):
        if image.shape[:2] != (size, size):
            _check_size(image.shape[1], image.shape[0], size, str(path), resize)
            key = (image.shape[1], image.shape[0])
            resized[key] = resized.get(key, 0) + 1
            image = resize_image(image, size)
        images[i] = image
    _warn_resized(resized, size)
    return Inputs(images, tuple(str(f) for f in files), labels, sum(resized.values()))


def _read_npz(path: Path, names: tuple[str, ...], size: int, resize: bool) -> Inputs:
    if not path.is_file():
        raise DataError("no such file", str(path), f"pass {_KINDS}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            unlabelled = "images" in keys and "labels" not in keys
            images = (
                to_rgb(np.asarray(archive["images"]), f"{path} [images]") if unlabelled else None
            )
            named = "class_names" in keys
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"cannot read the file as an .npz archive ({type(exc).__name__}: {exc})", str(path)
        ) from exc
    labels: np.ndarray | None = None
    if images is None:
        ds = read_npz(path)  # labelled: the loaders' own checks and label formats
        images = ds.images
        labels = np.asarray(ds.labels)
        if labels.dtype.kind not in "iu":
            raise DataError(f"labels have dtype {labels.dtype}", f"{path} [labels]", "store ints")
        if named:
            labels = _map_names(labels, ds.class_names, names, str(path))
        elif labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise DataError(
                f"labels range {int(labels.min())}..{int(labels.max())} but the model has "
                f"{len(names)} classes ({', '.join(names)})",
                f"{path} [labels]",
                "store class_names in the archive, or labels as indices in the model's order",
            )
        labels = labels.astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise DataError(
            f"images have dtype {images.dtype} and shape {images.shape}",
            f"{path} [images]",
            "store a non-empty uint8 N x H x W x 3 array (0-255)",
        )
    resized = 0
    if images.shape[1:3] != (size, size):
        _check_size(images.shape[2], images.shape[1], size, str(path), resize)
        resized = len(images)
        _warn_resized({(images.shape[2], images.shape[1]): resized}, size)
        images = np.stack([resize_image(im, size) for im in images])
    sources = tuple(f"{path}[{i}]" for i in range(len(images)))
    return Inputs(images, sources, labels, resized)


def _map_names(
    labels: np.ndarray, source: Sequence[str], model: tuple[str, ...], where: str
) -> np.ndarray:
    used = sorted({str(source[i]) for i in np.unique(labels)})
    unknown = [n for n in used if n not in model]
    if unknown:
        raise DataError(
            f"classes {unknown} are not classes of the model",
            where,
            f"the model knows {', '.join(model)}; drop those images or rename the classes",
        )
    table = np.array([model.index(str(n)) if str(n) in model else -1 for n in source])
    return table[labels].astype(np.int64)


def _check_size(width: int, height: int, size: int, where: str, resize: bool) -> None:
    if not resize:
        raise DataError(
            f"image is {width}x{height} pixels but the model expects {size}x{size}",
            where,
            f"resize the images to {size}x{size}, or leave out --no-resize to have them "
            "resized (Lanczos, whole frame)",
        )


def _warn_resized(counts: dict[tuple[int, int], int], size: int) -> None:
    if counts:
        found = ", ".join(f"{n} at {w}x{h}" for (w, h), n in sorted(counts.items()))
        log.warning(
            "warning: resized %s (%s) to the model's %dx%d (Lanczos, whole frame); "
            "pass --no-resize to refuse images of another size",
            counted(sum(counts.values()), "image"),
            found,
            size,
            size,
        )
