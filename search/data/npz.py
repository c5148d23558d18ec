"""Read an .npz archive: a generic ``images``/``labels`` file or the MedMNIST split layout.

Generic: ``images`` uint8 N x H x W x 3 (or grayscale N x H x W / N x H x W x 1), ``labels`` as
class indices (N or N x 1) or one-hot N x C, optional ``class_names`` (string array).

Class names come from the file's ``class_names``; without it, from the caller (the
``bloodmnist`` keyword passes BloodMNIST's, since MedMNIST files store none), else they are
``class_0``, ``class_1``, ... The file's name never chooses them.

MedMNIST (``train_images``, ``train_labels``, ``val_*``, ``test_*``): the splits present are
concatenated in the order train, val, test, so the official split is not kept; the search makes
its own stratified folds over all of them.

Archives are always opened with ``allow_pickle=False``: an object array is refused, never run.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from search.data.errors import DataError
from search.data.images import to_rgb
from trainer.records import Dataset

MEDMNIST_SPLITS: tuple[str, ...] = ("train", "val", "test")
_SAVE_HINT = "save it with np.savez(path, images=images_uint8, labels=labels_int64)"


def read_npz(path: Path, *, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Load an .npz file as a Dataset (not yet validated: dtypes are as stored).

    ``class_names`` name the classes of a file that stores none and has that many classes;
    otherwise they are ``class_0``, ``class_1``, ...
    """
    if not path.is_file():
        raise DataError(
            "no such file",
            str(path),
            "check the --data path, or use --data demo for synthetic data",
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read the file as an .npz archive ({type(exc).__name__}: {exc})",
            str(path),
            f"check the file is complete (not truncated or corrupt); {_SAVE_HINT}",
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"holds a single array of shape {getattr(archive, 'shape', '?')}, not an .npz archive",
            str(path),
            _SAVE_HINT,
        )
    with archive:
        keys = set(archive.files)
        if "images" in keys:
            return _read_generic(archive, path, class_names)
        if any(f"{s}_images" in keys for s in MEDMNIST_SPLITS):
            return _read_medmnist(archive, path, class_names)
    raise DataError(
        f"no 'images' array (keys found: {sorted(keys)}); expected 'images' and 'labels' "
        "(optional 'class_names'), or the MedMNIST keys 'train_images', 'train_labels', ...",
        str(path),
        _SAVE_HINT,
    )


def _read_generic(
    archive: np.lib.npyio.NpzFile, path: Path, default: tuple[str, ...] | None
) -> Dataset:
    if "labels" not in archive.files:
        raise DataError(
            f"has 'images' but no 'labels' array (keys found: {sorted(archive.files)})",
            str(path),
            _SAVE_HINT,
        )
    images = to_rgb(_array(archive, "images", path), f"{path} [images]")
    labels, width = _indices(_array(archive, "labels", path), f"{path} [labels]")
    names = _names(archive, path, labels, width, default=default)
    return Dataset(images, labels, names)


def _read_medmnist(
    archive: np.lib.npyio.NpzFile, path: Path, default: tuple[str, ...] | None
) -> Dataset:
    images, labels, widths = [], [], []
    for split in MEDMNIST_SPLITS:
        if f"{split}_images" not in archive.files:
            continue
        if f"{split}_labels" not in archive.files:
            raise DataError(
                f"has '{split}_images' but no '{split}_labels' (keys found: "
                f"{sorted(archive.files)})",
                str(path),
                "the MedMNIST layout needs a labels array for every images array",
            )
        key = f"{split}_images"
        images.append(to_rgb(_array(archive, key, path), f"{path} [{key}]"))
        key = f"{split}_labels"
        found, width = _indices(_array(archive, key, path), f"{path} [{key}]")
        labels.append(found)
        widths.append(width)
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"the splits hold images of different shapes {sorted(shapes)}",
            str(path),
            "store every split at the same image size",
        )
    if len(labels) > 1 and len({lab.dtype.kind for lab in labels}) > 1:
        raise DataError(
            f"the splits store labels as different dtypes {[str(lab.dtype) for lab in labels]}",
            str(path),
            "store every split's labels as integers",
        )
    width = max((w for w in widths if w is not None), default=None)
    merged = np.concatenate(labels)
    names = _names(archive, path, merged, width, default=default)
    return Dataset(np.concatenate(images), merged, names)


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"array '{key}' is an object (pickled) array, which is never loaded",
                str(path),
                f"store plain numeric arrays: np.stack the items first; {_SAVE_HINT}",
            ) from exc
        raise _corrupt(key, path, exc) from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _corrupt(key, path, exc) from exc


def _corrupt(key: str, path: Path, exc: Exception) -> DataError:
    return DataError(
        f"cannot read array '{key}' ({type(exc).__name__}: {exc})",
        str(path),
        "the archive looks truncated or corrupt: copy or download it again",
    )


def _indices(labels: np.ndarray, where: str) -> tuple[np.ndarray, int | None]:
    """Class indices from N, N x 1 or one-hot N x C labels; also the one-hot width C."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        return labels.reshape(-1), None
    if labels.ndim == 2 and labels.shape[1] > 1:
        numeric = labels.dtype.kind in "biuf"
        one_hot = numeric and bool(
            np.isin(labels, (0, 1)).all() and (labels.sum(axis=1) == 1).all()
        )
        if not one_hot:
            raise DataError(
                f"labels have shape {labels.shape} but are not one-hot (each row needs a single "
                "1 and zeros elsewhere); multi-label data is not supported",
                where,
                "store one class index per image (shape N), or one-hot rows",
            )
        return labels.argmax(axis=1).astype(np.int64), int(labels.shape[1])
    if labels.ndim == 1:
        return labels, None
    raise DataError(
        f"labels have shape {labels.shape}; expected N, N x 1 or one-hot N x C",
        where,
        "store one class index per image",
    )


def _names(
    archive: np.lib.npyio.NpzFile,
    path: Path,
    labels: np.ndarray,
    width: int | None,
    default: tuple[str, ...] | None,
) -> tuple[str, ...]:
    if "class_names" in archive.files:
        raw = _array(archive, "class_names", path)
        if raw.ndim != 1 or raw.dtype.kind not in "US":
            raise DataError(
                f"class_names has dtype {raw.dtype} and shape {raw.shape}; expected a 1-D array "
                "of strings",
                f"{path} [class_names]",
                "save it as np.array(['name_0', 'name_1', ...])",
            )
        return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw.tolist())
    if width is not None:
        n_classes = width
    elif labels.dtype.kind in "iu" and labels.size:
        n_classes = max(int(labels.max()) + 1, 0)
    else:
        return ()  # validate() reports the label problem itself
    if default is not None and n_classes == len(default):
        return default
    return tuple(f"class_{i}" for i in range(n_classes))
