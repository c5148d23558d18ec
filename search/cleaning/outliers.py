"""Outliers: images that do not look like the rest, found without labels.

Each image is described by ``look_features`` (colour as optical density, saturation,
edges, flat areas, colour count, fine texture). Every feature is centred on its median and
divided by its 10-90% inter-quantile range (/ 2.563, so one unit is one standard deviation for
normal data): up to 10% odd images cannot stretch the scale, while the spread between real
acquisition batches still counts (a MAD scale, set by the largest batch alone, made every image of
a smaller batch look odd on small data sets). The score of an image is its mean Euclidean distance to
its ``k`` nearest other images in that space, divided by the median of that distance over the
data set. An image is an outlier when its score exceeds the threshold: "more than T times as
far from its neighbours as a typical image is".

Why neighbours and not one robust centre (``MinCovDet`` Mahalanobis distance): real data come in
batches (a staining run, a scanner, a lighting setup). In the blood-cell images the project tests
with, for example, 14% of the images have a grey-lavender background; a single robust ellipse fits
the main beige batch and puts the lavender one as far out as pasted photos. A batch of hundreds of
images still has close neighbours; a stray image does not. A cluster of more than ``k``
near-identical strays would hide itself (see docs/cleaning.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from search.cleaning.features import look_features

DEFAULT_NEIGHBORS = 5


_Z90 = 2 * 1.2816  # the 10-90% range of a standard normal


def robust_standardise(features: np.ndarray) -> np.ndarray:
    """(x - median) / ((q90 - q10) / 2.563) per column; a zero range falls back to MAD, then 1."""
    med = np.median(features, axis=0)
    q10, q90 = np.percentile(features, [10, 90], axis=0)
    scale = (q90 - q10) / _Z90
    mad = 1.4826 * np.median(np.abs(features - med), axis=0)
    scale = np.where(scale > 0, scale, np.where(mad > 0, mad, 1.0))
    return (features - med) / scale


def neighbour_scores(z: np.ndarray, k: int = DEFAULT_NEIGHBORS) -> np.ndarray:
    """Mean distance to the k nearest other rows, over its median across rows (1 = typical)."""
    n = z.shape[0]
    if n < 2:
        return np.zeros(n)
    k = min(k, n - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    score = dist[:, 1:].mean(axis=1)
    typical = float(np.median(score))
    return score / typical if typical > 0 else np.zeros(n)


def outlier_scores(images: np.ndarray, k: int = DEFAULT_NEIGHBORS) -> np.ndarray:
    """Outlier score of every image (uint8 N x H x W x 3); see the module docstring."""
    return neighbour_scores(robust_standardise(look_features(images)), k)
