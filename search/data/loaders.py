"""``load_dataset``: one entry point from a ``--data`` spec to a checked Dataset."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from search.data.bloodmnist import fetch_bloodmnist, nearest_size
from search.data.classes import BLOODMNIST_CLASSES
from search.data.demo import make_demo
from search.data.demo_orientation import make_demo_orientation
from search.data.errors import DataError
from search.data.folder import read_folder
from search.data.images import check_image_size, resize_all, stretch_warning
from search.data.npz import read_npz
from search.data.validate import validate
from search.text import counted
from trainer.records import Dataset

DEMO_N = 1600
DEMO_SIZE = 64
_SPECS = (
    "'demo', 'bloodmnist', 'demo-orientation', a path to an .npz file, or a folder of class folders"
)

log = logging.getLogger(__name__)


def load_dataset(
    spec: str | os.PathLike[str], *, image_size: int | None = None, cache_dir: Path | None = None
) -> Dataset:
    """Load, check and (with ``image_size``) resize the data set that ``spec`` names.

    ``spec`` is ``"demo"`` (1,600 synthetic blood-cell images, see ``make_demo``),
    ``"demo-orientation"`` (1,600 synthetic images whose 8 classes differ only by orientation, see
    ``make_demo_orientation``), ``"bloodmnist"`` (MedMNIST's file nearest ``image_size`` of
    28/64/128/224, downloaded once into ``cache_dir``, default ``~/.cache/bloodcell-search``), a
    path to an ``.npz`` file, or a folder of class folders. The keywords win over a folder of the
    same name (write ``./demo`` for that).

    Images of another size than ``image_size`` are resized with Pillow, Lanczos, whole frame,
    no crop. With ``image_size=None`` the native size is kept, and every image must share it.
    The result is validated (``validate`` without folds): uint8 N x H x W x 3, int64 labels.
    Raises DataError for anything unusable, naming the file and what to do.
    """
    size = check_image_size(image_size)
    text = os.fspath(spec)
    keyword = text.strip().lower()
    if keyword == "demo":
        ds = make_demo(DEMO_N, size or DEMO_SIZE)
        return validate(ds, source="demo")
    if keyword == "demo-orientation":
        ds = make_demo_orientation(DEMO_N, size or DEMO_SIZE)
        return validate(ds, source="demo-orientation")
    if keyword == "bloodmnist":
        path = fetch_bloodmnist(nearest_size(size), cache_dir)
        return _checked(read_npz(path, class_names=BLOODMNIST_CLASSES), str(path), size)
    if not text.strip():
        raise DataError("empty data spec", "--data", f"pass {_SPECS}")
    path = Path(text).expanduser()
    if path.is_dir():
        return validate(read_folder(path, size), source=str(path))
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DataError(
                f"unsupported file type '{path.suffix or '(none)'}'",
                str(path),
                f"pass {_SPECS}",
            )
        return _checked(read_npz(path), str(path), size)
    raise DataError("no such file or folder", str(path), f"pass {_SPECS}")


def _checked(ds: Dataset, source: str, size: int | None) -> Dataset:
    ds = validate(ds, source=source)
    if size is not None and ds.images.shape[1:3] != (size, size):
        log.info("resizing %s from %s to %dx%d", counted(len(ds), "image"), source, size, size)
        height, width = ds.images.shape[1:3]
        stretch_warning(len(ds) if height != width else 0, (height, width), size, source)
        ds = Dataset(resize_all(ds.images, size), ds.labels, ds.class_names)
    return ds
