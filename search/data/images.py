"""Pixel helpers shared by the loaders: channel handling, decoding and resizing.

Resizing is Pillow ``Image.resize(..., Resampling.LANCZOS)`` on the uint8 RGB frame: the whole
frame, no crop, so a non-square image is stretched to square (the real blood-cell images the
project tests with were made the same way from 360 x 363 frames); the loaders log a warning
saying how many images that stretches. Files that do not decode are collected, so one error
names every broken file of a folder instead of one per run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from search.data.errors import DataError
from search.text import counted

MIN_IMAGE_SIZE = 8
MAX_LISTED = 10  # unreadable files named in one error; the rest are counted
DECODE_FIX = "replace or delete the file (or move it out of the class folder)"
DECODE_FIXES = (DECODE_FIX, "replace or delete those files (or move them out of the class folder)")

log = logging.getLogger(__name__)


def check_image_size(image_size: int | None) -> int | None:
    """Return ``image_size`` if it is None or an int of at least MIN_IMAGE_SIZE, else raise."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise DataError(
            f"image_size={image_size!r} is not an integer", "image size", "pass pixels, e.g. 64"
        )
    if image_size < MIN_IMAGE_SIZE:
        raise DataError(
            f"image_size={image_size} is below {MIN_IMAGE_SIZE} pixels",
            "image size",
            f"pass --image-size {MIN_IMAGE_SIZE} or more (e.g. 64 or 96)",
        )
    return int(image_size)


def to_rgb(images: np.ndarray, where: str) -> np.ndarray:
    """N x H x W or N x H x W x 1 grayscale -> N x H x W x 3; N x H x W x 3 passes through."""
    if images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=-1)
    if images.ndim == 4 and images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    if images.ndim == 4 and images.shape[-1] == 4:
        raise DataError(
            f"images have shape {images.shape}: 4 channels (RGBA?), expected 1 or 3",
            where,
            "drop the alpha channel with images[..., :3] and save again",
        )
    if images.ndim == 4 and images.shape[-1] == 3:
        return images
    raise DataError(
        f"images have shape {images.shape}; expected N x H x W x 3 (RGB), N x H x W x 1 or "
        "N x H x W (grayscale)",
        where,
        "store one image per row of the first axis, channels last",
    )


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 H x W x 3 image to size x size (Lanczos, whole frame, no crop)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N x H x W x 3 to N x size x size x 3 (``images`` itself if already that size)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = np.empty((images.shape[0], size, size, 3), dtype=np.uint8)
    for i in range(images.shape[0]):
        out[i] = resize_image(images[i], size)
    return out


def decode_image(path: Path) -> np.ndarray:
    """Decode one image file to uint8 H x W x 3 RGB, or raise DataError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({_why(exc, path)})", str(path), DECODE_FIX) from exc
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"image too large to decode safely ({exc})", str(path), "downscale or remove the file"
        ) from exc
    return np.asarray(rgb, dtype=np.uint8)


def decode_each(
    paths: Iterable[Path],
    where: str,
    fixes: tuple[str, str] = DECODE_FIXES,
    unreadable: Sequence[tuple[str, str]] = (),
) -> Iterator[tuple[Path, np.ndarray]]:
    """``(path, image)`` for every file that decodes, then one DataError naming every file that
    did not, after the ``(file, problem)`` pairs already found in ``unreadable`` (``where``: the
    folder or input they came from; ``fixes``: what to do about one file, and about several), so
    several broken files are reported in one run, not one per run."""
    bad = list(unreadable)
    for path in paths:
        try:
            image = decode_image(path)
        except DataError as exc:
            bad.append((str(path), exc.problem))
            continue
        yield path, image
    if bad:
        raise unreadable_files(bad, where, fixes)


def unreadable_files(
    bad: Sequence[tuple[str, str]], where: str, fixes: tuple[str, str] = DECODE_FIXES
) -> DataError:
    """One error for the ``(file, problem)`` pairs in ``bad``, the first MAX_LISTED named and the
    rest counted; a single file reads ``"<file>: <problem>. <fix>."`` as decode_image's own."""
    if len(bad) == 1:
        ((path, problem),) = bad
        return DataError(problem, path, fixes[0])
    listed = "; ".join(f"{path} ({problem})" for path, problem in bad[:MAX_LISTED])
    rest = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return DataError(
        f"{counted(len(bad), 'file')} cannot be read as images: {listed}{rest}", where, fixes[1]
    )


def _why(exc: Exception, path: Path) -> str:
    """``"<Type>: <message>"`` without the file name that Pillow repeats in some messages."""
    text = str(exc).replace(f" '{path}'", "")
    return f"{type(exc).__name__}: {text}"


def stretch_warning(count: int, example: tuple[int, int], size: int, source: str) -> None:
    """Warn that ``count`` images that are not square (``example``: one's height x width) are
    resized to ``size`` x ``size``: the whole frame is stretched, so their proportions change."""
    if count == 0:
        return
    height, width = example
    log.warning(
        "warning: %s from %s %s not square (e.g. %dx%d, width x height) and %s stretched to "
        "%dx%d squares (whole frame, no crop); crop them to squares first to keep their "
        "proportions",
        counted(count, "image"),
        source,
        "is" if count == 1 else "are",
        width,
        height,
        "is" if count == 1 else "are",
        size,
        size,
    )
