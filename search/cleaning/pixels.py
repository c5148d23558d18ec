"""Pixel helpers shared by the detectors: grayscale and fixed-size working copies."""

from __future__ import annotations

import numpy as np
from PIL import Image

WORK_SIZE = 64  # detectors see every image at 64 x 64 (set before measuring: docs/constants.md)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CHUNK = 512


def gray(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x 3 -> float32 N x H x W luma in 0..255 (ITU-R 601 weights)."""
    out = np.empty(images.shape[:3], dtype=np.float32)
    for start in range(0, images.shape[0], _CHUNK):
        out[start : start + _CHUNK] = images[start : start + _CHUNK].astype(np.float32) @ _LUMA
    return out


def resize_stack(planes: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """float32 N x H x W (or N x H x W x C) -> N x size x size (x C), area-averaged down.

    Integer factors use a block mean (exact and fast); other sizes go through Pillow per plane
    (box filter when shrinking, bilinear when enlarging).
    """
    n, h, w = planes.shape[:3]
    if (h, w) == (size, size):
        return planes.astype(np.float32, copy=False)
    if h == w and h % size == 0:
        f = h // size
        shape = (n, size, f, size, f, *planes.shape[3:])
        return planes.astype(np.float32, copy=False).reshape(shape).mean(axis=(2, 4))
    method = Image.Resampling.BOX if h > size else Image.Resampling.BILINEAR
    channels = planes.shape[3:]
    out = np.empty((n, size, size, *channels), dtype=np.float32)
    flat = planes.astype(np.float32, copy=False).reshape(n, h, w, -1)
    view = out.reshape(n, size, size, -1)
    for i in range(n):
        for c in range(flat.shape[3]):
            im = Image.fromarray(np.ascontiguousarray(flat[i, :, :, c]))
            view[i, :, :, c] = np.asarray(im.resize((size, size), method))
    return out


def work_rgb(images: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """uint8 N x H x W x 3 -> uint8 N x size x size x 3 (Pillow, box filter when shrinking)."""
    n, h, w = images.shape[:3]
    if (h, w) == (size, size):
        return images
    method = Image.Resampling.BOX if h > size else Image.Resampling.BILINEAR
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(images[i]).resize((size, size), method))
    return out


def work_gray(images: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """uint8 N x H x W x 3 -> float32 N x size x size luma, in chunks."""
    out = np.empty((images.shape[0], size, size), dtype=np.float32)
    for start in range(0, images.shape[0], _CHUNK):
        out[start : start + _CHUNK] = resize_stack(gray(images[start : start + _CHUNK]), size)
    return out
