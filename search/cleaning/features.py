"""Cheap per-image features, all computed on the 64 x 64 working copy.

``look_features`` describe how an image looks regardless of what it shows (colour as optical
density, as for stained slides, saturation, edges, flat areas, colour count, fine texture): the
outlier detector compares images on them. ``class_features`` describe the object in the middle
(colour and texture in rings around the centre, an optical-density colour histogram), as in a
centred cell or specimen: the quick mislabel model learns the classes from them.
"""

from __future__ import annotations

import numpy as np

from search.cleaning.pixels import WORK_SIZE, work_rgb

LOOK_NAMES: tuple[str, ...] = (
    "od_mean_r", "od_mean_g", "od_mean_b", "od_std_r", "od_std_g", "od_std_b",
    "saturation_mean", "saturation_p90", "gradient_mean", "gradient_p99", "flat_fraction",
    "log_colours", "laplacian_mean",
)  # fmt: skip
_CHUNK = 512
_FLAT = 1.0  # gradient below 1 grey level per pixel counts as flat
_RINGS = ((0, 6), (6, 12), (12, 18), (18, 24), (24, 32), (32, 64))
_OD_BINS = 6
_OD_MAX = 1.6


_OD_LUT = -np.log((np.arange(256, dtype=np.float32) + 1.0) / 256.0)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Beer-Lambert optical density -ln((I + 1) / 256) of uint8 values (0 white, 5.5 black)."""
    return _OD_LUT[rgb]


def _quantile(a: np.ndarray, q: float) -> np.ndarray:
    """Per-row q-quantile of a 2-D array (nearest rank, via partition: no full sort)."""
    k = min(a.shape[1] - 1, int(round(q * (a.shape[1] - 1))))
    return np.partition(a, k, axis=1)[:, k]


def _look_chunk(rgb: np.ndarray) -> np.ndarray:
    n = rgb.shape[0]
    planes = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))  # n x 3 x H x W
    od = optical_density(planes).reshape(n, 3, -1)
    f = planes.astype(np.float32)
    r, g, b = f[:, 0], f[:, 1], f[:, 2]
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    sat = ((hi - lo) / (hi + 1.0)).reshape(n, -1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    grad = np.hypot(np.diff(y, axis=1)[:, :, :-1], np.diff(y, axis=2)[:, :-1, :]).reshape(n, -1)
    lap = np.abs(
        4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]
    )
    q = (planes >> 4).astype(np.int64)
    code = (q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]).reshape(n, -1)
    code += (np.arange(n, dtype=np.int64) * 4096)[:, None]
    colours = (np.bincount(code.ravel(), minlength=n * 4096).reshape(n, 4096) > 0).sum(axis=1)
    return np.column_stack(
        [
            od.mean(axis=2),
            od.std(axis=2),
            sat.mean(axis=1),
            _quantile(sat, 0.9),
            grad.mean(axis=1),
            _quantile(grad, 0.99),
            (grad < _FLAT).mean(axis=1),
            np.log(colours),
            lap.reshape(n, -1).mean(axis=1),
        ]
    ).astype(np.float64)


def look_features(images: np.ndarray) -> np.ndarray:
    """float64 N x len(LOOK_NAMES): label-free colour and texture statistics per image."""
    out = np.empty((images.shape[0], len(LOOK_NAMES)), dtype=np.float64)
    for start in range(0, images.shape[0], _CHUNK):
        out[start : start + _CHUNK] = _look_chunk(work_rgb(images[start : start + _CHUNK]))
    return out


def _class_chunk(rgb: np.ndarray) -> np.ndarray:
    n, size = rgb.shape[0], rgb.shape[1]
    od = optical_density(rgb)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2) * (64.0 / size)
    total = od.sum(axis=-1)
    grad = np.zeros_like(total)
    grad[:, :-1, :-1] = np.hypot(np.diff(total, axis=1)[:, :, :-1], np.diff(total, axis=2)[:, :-1])
    parts = []
    for a, b in _RINGS:
        ring = (r >= a) & (r < b)
        vals = od[:, ring]  # n x pixels x 3
        parts += [vals.mean(axis=1), vals.std(axis=1), grad[:, ring].mean(axis=1)[:, None]]
        parts.append((total[:, ring] > 1.2).mean(axis=1)[:, None])  # dark (nucleus) share
    q = np.clip((od / _OD_MAX * _OD_BINS).astype(np.int64), 0, _OD_BINS - 1)
    code = (q * np.array([_OD_BINS**2, _OD_BINS, 1])).sum(axis=-1).reshape(n, -1)
    bins = _OD_BINS**3
    code += (np.arange(n, dtype=np.int64) * bins)[:, None]
    hist = np.bincount(code.ravel(), minlength=n * bins).reshape(n, bins) / code.shape[1]
    parts.append(np.sqrt(hist))
    return np.concatenate(parts, axis=1).astype(np.float64)


def class_features(images: np.ndarray) -> np.ndarray:
    """float64 N x F: ring colour/texture profile around the centre plus an OD histogram."""
    chunks = [
        _class_chunk(work_rgb(images[start : start + _CHUNK], WORK_SIZE))
        for start in range(0, images.shape[0], _CHUNK)
    ]
    return np.concatenate(chunks, axis=0)
