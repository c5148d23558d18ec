"""A content hash of a data set, to tell whether two runs trained on the same data."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from trainer.records import Dataset

_VERSION = "dataset-fingerprint-v1"
_CHUNK_ROWS = 256


def fingerprint(ds: Dataset) -> str:
    """SHA-256 (hex) over shapes, dtypes, image bytes, label bytes and class names.

    Stable across processes and machines: arrays are hashed in a fixed byte order, and the
    header is canonical JSON. Any changed pixel, label, order or name changes it.
    """
    images = np.asarray(ds.images)
    labels = np.asarray(ds.labels)
    header = {
        "version": _VERSION,
        "images": {"shape": list(images.shape), "dtype": _le(images.dtype)},
        "labels": {"shape": list(labels.shape), "dtype": _le(labels.dtype)},
        "class_names": [str(n) for n in ds.class_names],
    }
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode("utf-8"))
    rows = images.shape[0] if images.ndim else 0
    if rows == 0:
        h.update(_le_bytes(images))
    for start in range(0, rows, _CHUNK_ROWS):  # chunks: no full copy of a strided array
        h.update(_le_bytes(images[start : start + _CHUNK_ROWS]))
    h.update(_le_bytes(labels))
    return h.hexdigest()


def _le_bytes(a: np.ndarray) -> bytes:
    """The array's bytes, C order, little-endian (so big-endian machines agree)."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()


def _le(dtype: np.dtype) -> str:
    return dtype.newbyteorder("<").str
