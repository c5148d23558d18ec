"""Check a data set once, before any trial runs, so a broken data path fails fast and clearly."""

from __future__ import annotations

import numpy as np

from search.data.errors import DataError
from search.text import counted
from trainer.records import Dataset

_LABELS_HINT = "labels must be class indices 0..C-1, one per image"


def validate(ds: Dataset, *, n_folds: int | None = None, source: str = "") -> Dataset:
    """Return ``ds`` with int64 labels and str class names, or raise DataError.

    Checks: images uint8 N x H x W x 3 and not empty; labels integers, 1-D, as many as images,
    none negative, each below the number of class names; every named class has images; at least
    two classes; with ``n_folds``, every class has at least ``n_folds`` images (stratified
    k-fold needs one per fold). ``source`` (a path or spec) is named in every message.
    """
    src = source or "dataset"
    images = _check_images(ds.images, f"{src} [images]")
    labels = _check_labels(ds.labels, f"{src} [labels]")
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{counted(images.shape[0], 'image')} but {counted(labels.shape[0], 'label')}",
            src,
            "give exactly one label per image, in the same order",
        )
    names = _check_names(ds.class_names, labels, src)
    counts = np.bincount(labels, minlength=len(names))
    if n_folds is not None:
        _check_folds(n_folds, counts, names, src)
    return Dataset(images, labels, names)


def _check_images(images: object, where: str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise DataError(
            f"images are a {type(images).__name__}, not a numpy array",
            where,
            "pass a uint8 numpy array of shape N x H x W x 3",
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"images have shape {images.shape}; expected N x H x W x 3 (RGB)",
            where,
            "stack the images into one N x H x W x 3 array; for grayscale N x H x W, repeat "
            "the channel with np.repeat(images[..., None], 3, axis=-1)",
        )
    if images.shape[0] == 0:
        raise DataError(
            "the dataset is empty (0 images)", where, "point --data at a data set with images"
        )
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"images have shape {images.shape} (zero height or width)", where)
    if images.dtype != np.uint8:
        raise DataError(
            f"images have dtype {images.dtype}; expected uint8 (0-255)",
            where,
            _uint8_hint(images),
        )
    return images


def _uint8_hint(images: np.ndarray) -> str:
    if images.dtype.kind not in "fiu":
        return "store the pixels as a numeric uint8 array (0-255)"
    lo, hi = float(np.min(images)), float(np.max(images))
    if images.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return (
            f"values are in [{lo:g}, {hi:g}]: convert with (images * 255).round().astype(np.uint8)"
        )
    if lo >= 0.0 and hi <= 255.0:
        round_ = ".round()" if images.dtype.kind == "f" else ""
        return f"values are in [{lo:g}, {hi:g}]: convert with images{round_}.astype(np.uint8)"
    return f"values range from {lo:g} to {hi:g}: rescale them to 0..255, then .astype(np.uint8)"


def _check_labels(labels: object, where: str) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise DataError(
            f"labels are a {type(labels).__name__}, not a numpy array",
            where,
            "pass an int64 numpy array of shape N",
        )
    if labels.ndim != 1:
        raise DataError(
            f"labels have shape {labels.shape}; expected N (one class index per image)",
            where,
            "flatten N x 1 labels with labels.reshape(-1), or turn one-hot N x C labels into "
            "indices with labels.argmax(axis=1)",
        )
    if labels.dtype.kind not in "iu":
        problem, fix = _non_integer(labels)
        raise DataError(problem, where, fix)
    labels = labels.astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        bad = np.flatnonzero(labels < 0)
        more = f" ({bad.size} negative labels in all)" if bad.size > 1 else ""
        raise DataError(
            f"negative label {int(labels[bad[0]])} at index {int(bad[0])}{more}",
            where,
            f"{_LABELS_HINT}: drop or relabel those images",
        )
    return labels


def _non_integer(labels: np.ndarray) -> tuple[str, str]:
    """(problem, fix) for labels that are not stored as integers."""
    problem = f"labels have dtype {labels.dtype}, not an integer type"
    if labels.dtype.kind == "f" and labels.size:
        finite = np.isfinite(labels)
        frac = ~finite | (np.floor(np.where(finite, labels, 0)) != labels)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            return f"{problem}: non-integer value {labels[i].item()!r} at index {i}", _LABELS_HINT
        return problem, "the values are whole numbers: convert with labels.astype(np.int64)"
    return problem, f"{_LABELS_HINT}, stored as an integer array"


def _check_names(names: object, labels: np.ndarray, src: str) -> tuple[str, ...]:
    where = f"{src} [class_names]"
    if isinstance(names, str) or not isinstance(names, (tuple, list, np.ndarray)):
        raise DataError(
            f"class_names is a {type(names).__name__}; expected a sequence of strings",
            where,
            "pass a tuple of class names, one per class index",
        )
    names = tuple(str(n) for n in names)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(
            f"duplicate class name{'s' if len(dupes) > 1 else ''} {_listed(tuple(dupes))}",
            where,
            "give each class its own name",
        )
    top = int(labels.max())
    if top >= len(names):
        i = int(np.flatnonzero(labels == top)[0])
        raise DataError(
            f"label {top} at index {i}, but only {counted(len(names), 'class name')} "
            f"{_short(names)}",
            where,
            "labels must be below the number of class names: add the missing names or fix "
            "the labels",
        )
    counts = np.bincount(labels, minlength=len(names))
    present = np.flatnonzero(counts)
    if present.size < 2:
        raise _one_class(names, int(present[0]), int(counts[present[0]]), f"{src} [labels]")
    empty = [f"'{names[i]}' (index {i})" for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(
            f"{counted(len(names), 'class name')} but labels use "
            f"{counted(present.size, 'class')}: "
            f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no images",
            where,
            "drop those names from class_names and renumber the labels, or add images of them",
        )
    return names


def _one_class(names: tuple[str, ...], only: int, n_images: int, where: str) -> DataError:
    """Every image has the same label: say which class, how many images, and what to check."""
    which = f"all {n_images} images are" if n_images != 1 else "the only image is"
    others = tuple(n for i, n in enumerate(names) if i != only)
    unused = ""
    if others:
        have = "has" if len(others) == 1 else "have"
        unused = f" (class_names also lists {_listed(others)}, which {have} no images)"
    return DataError(
        f"only one class found: {which} '{names[only]}'{unused}, but a classifier needs at "
        "least 2 classes",
        where,
        "check the labels: each image needs its class index 0..C-1, and at least 2 classes "
        "must have images",
    )


def _check_folds(n_folds: int, counts: np.ndarray, names: tuple[str, ...], where: str) -> None:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise DataError(
            f"n_folds={n_folds!r}", where, "cross-validation needs an integer of at least 2 folds"
        )
    small = [int(i) for i in np.argsort(counts, kind="stable") if counts[i] < n_folds]
    if small:
        them = "those classes" if len(small) > 1 else "that class"
        most = int(counts.min())
        if most >= 2:
            fix = f"use --folds {most} or fewer, or add images of {them}"
        else:
            fix = (
                f"every class needs as many images as folds ({n_folds} here; --folds 2 is the "
                f"fewest): add images of {them}"
            )
        if len(small) == 1:
            i = small[0]
            problem = f"class '{names[i]}' has {counted(counts[i], 'image')}, fewer than the "
            problem += f"{n_folds} folds"
        else:
            listed = ", ".join(f"'{names[i]}' ({counted(counts[i], 'image')})" for i in small[:5])
            rest = f", and {len(small) - 5} more" if len(small) > 5 else ""
            problem = f"{len(small)} classes have fewer images than the {n_folds} folds: "
            problem += f"{listed}{rest}"
        raise DataError(
            problem,
            where,
            f"{fix}; stratified k-fold puts images of every class in every fold",
        )


def _listed(names: tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"{shown}{', ...' if len(names) > limit else ''}"


def _short(names: tuple[str, ...], limit: int = 8) -> str:
    return f"({_listed(names, limit)})"
