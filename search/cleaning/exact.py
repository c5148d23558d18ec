"""Exact duplicates: images whose pixel bytes (and shape) hash the same."""

from __future__ import annotations

import hashlib

import numpy as np


def pixel_digest(image: np.ndarray) -> bytes:
    """BLAKE2b digest of one image's shape and C-order pixel bytes."""
    h = hashlib.blake2b(digest_size=20)
    h.update(str(image.shape).encode("ascii"))
    h.update(np.ascontiguousarray(image).tobytes())
    return h.digest()


def exact_groups(images: np.ndarray) -> list[list[int]]:
    """Groups (2 or more indices, ascending; groups ordered by first index) of identical images."""
    seen: dict[bytes, list[int]] = {}
    for i in range(images.shape[0]):
        seen.setdefault(pixel_digest(images[i]), []).append(i)
    return sorted((g for g in seen.values() if len(g) > 1), key=lambda g: g[0])
