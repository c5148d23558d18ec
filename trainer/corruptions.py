"""A fixed, seeded set of realistic image corruptions, for a robustness score.

A model is also judged on copies of its test images that went through what a second camera,
scanner, microscope or lab changes: focus (blur), sensor noise, JPEG re-compression, exposure
(brightness/contrast), colour (a hue shift, as a second stain batch gives) and orientation
(rotation, reflected at the borders).

What may change follows the data, as the augmentation does: the rotation turns by any angle only
where the images' ``symmetry`` is ``dihedral`` (else it tilts by 5..15 degrees, never upside
down), and the stain shift turns the hue only where ``colour`` is ``shift`` (else it changes
saturation alone).

Every corruption maps uint8 N x H x W x 3 to uint8 of the same shape and is deterministic given
the seed: ``corrupt(images, name, seed)`` draws from ``numpy.random.default_rng((seed, k))``
where k is the corruption's position in ``CORRUPTIONS``, so each corruption has its own stream.
Strengths are fixed (one severity), drawn per image from a range that excludes "no change";
pixel lengths (blur sigma, rotation) are given at 96 px and scale with the image size.
numpy + Pillow only (no TensorFlow), vectorised over the batch except JPEG (Pillow per image).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["CORRUPTIONS", "corrupt", "corrupt_each"]

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]

BLUR_SIGMA_96 = 1.3  # pixels at 96 px: a visibly soft focus, cells still recognisable
NOISE_STD = 10.0  # grey levels (of 255)
JPEG_QUALITY = (15, 30)
BRIGHTNESS = (15.0, 35.0)  # +- grey levels
CONTRAST = (0.2, 0.35)  # +- relative change of the contrast
HUE_DEGREES = (10.0, 25.0)  # +- rotation of the hue (YIQ chroma plane)
SATURATION = (0.8, 1.2)
ROTATION_DEGREES = (15.0, 75.0)  # plus a random multiple of 90: never a dihedral symmetry
TILT_DEGREES = (5.0, 15.0)  # +- for images with an up (symmetry mirror or none)


def _scale(images: np.ndarray) -> float:
    return float(min(images.shape[1], images.shape[2])) / 96.0


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Separable Gaussian blur, sigma 1.3 px at 96 px, borders reflected."""
    del rng  # fixed strength: nothing random
    sigma = BLUR_SIGMA_96 * _scale(images)
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    x = images.astype(np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad, mode="reflect")
        n = x.shape[axis]
        out = np.zeros_like(x)
        for k, w in enumerate(kernel):
            window = [slice(None)] * 4
            window[axis] = slice(k, k + n)
            out += np.float32(w) * padded[tuple(window)]
        x = out
    return _to_uint8(x)


def gaussian_noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, standard deviation 10 grey levels, per pixel and channel."""
    noise = rng.normal(0.0, NOISE_STD, size=images.shape).astype(np.float32)
    return _to_uint8(images.astype(np.float32) + noise)


def jpeg(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG re-compression at a quality drawn per image from 15..30 (Pillow, 4:2:0)."""
    qualities = rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, size=len(images))
    out = np.empty_like(images)
    for i, (image, quality) in enumerate(zip(images, qualities, strict=True)):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, "JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"), dtype=np.uint8)
    return out


def brightness_contrast(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast scaled by 1 +- 0.2..0.35 around the image mean, then brightness +- 15..35."""
    n = len(images)
    contrast = 1.0 + _signs(rng, n) * rng.uniform(*CONTRAST, size=n)
    brightness = _signs(rng, n) * rng.uniform(*BRIGHTNESS, size=n)
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    c = contrast.astype(np.float32)[:, None, None, None]
    b = brightness.astype(np.float32)[:, None, None, None]
    return _to_uint8((x - mean) * c + mean + b)


_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=np.float64,
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def stain_shift(images: np.ndarray, rng: np.random.Generator, hue: bool = True) -> np.ndarray:
    """Stain colour change: hue rotated +- 10..25 degrees, saturation x0.8..1.2, luma kept.

    One 3 x 3 colour matrix per image (rotation and scaling of the YIQ chroma plane), so a
    purple nucleus turns bluer or redder the way another lab's Wright-Giemsa batch does.
    """
    n = len(images)
    angle = np.deg2rad(_signs(rng, n) * rng.uniform(*HUE_DEGREES, size=n)) * float(hue)
    saturation = rng.uniform(*SATURATION, size=n)
    cos, sin = np.cos(angle) * saturation, np.sin(angle) * saturation
    chroma = np.zeros((n, 3, 3))
    chroma[:, 0, 0] = 1.0
    chroma[:, 1, 1], chroma[:, 1, 2] = cos, -sin
    chroma[:, 2, 1], chroma[:, 2, 2] = sin, cos
    matrices = (_YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ).astype(np.float32)  # n x 3 x 3
    x = images.astype(np.float32)
    return _to_uint8(np.einsum("nhwc,ndc->nhwd", x, matrices))


def _reflect(coord: np.ndarray, size: int) -> np.ndarray:
    """Map continuous coordinates into [0, size - 1] by mirroring at the borders."""
    if size == 1:
        return np.zeros_like(coord)
    period = 2.0 * (size - 1)
    c = np.mod(coord, period)
    return np.where(c > size - 1, period - c, c)


def rotation(images: np.ndarray, rng: np.random.Generator, upright: bool = False) -> np.ndarray:
    """Rotation about the centre by 15..75 degrees plus k x 90 (``upright``: by 5..15 degrees
    either way), bilinear, borders reflected."""
    n, h, w, _ = images.shape
    if upright:
        degrees = _signs(rng, n) * rng.uniform(*TILT_DEGREES, size=n)
    else:
        degrees = rng.uniform(*ROTATION_DEGREES, size=n) + 90.0 * rng.integers(0, 4, size=n)
    theta = np.deg2rad(degrees)[:, None, None]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    # Inverse mapping: each output pixel samples the input at the un-rotated position.
    src_y = _reflect(np.cos(theta) * yy[None] - np.sin(theta) * xx[None] + cy, h)
    src_x = _reflect(np.sin(theta) * yy[None] + np.cos(theta) * xx[None] + cx, w)
    y0 = np.clip(np.floor(src_y).astype(np.int64), 0, h - 1)
    x0 = np.clip(np.floor(src_x).astype(np.int64), 0, w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy = (src_y - y0).astype(np.float32)[..., None]
    fx = (src_x - x0).astype(np.float32)[..., None]
    flat = images.reshape(n * h * w, 3)
    base = (np.arange(n) * (h * w))[:, None, None]

    def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.take(flat, base + y * w + x, axis=0).astype(np.float32)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return _to_uint8(top * (1 - fy) + bottom * fy)


# Explicit table (no registration by import side effect); the order fixes each seed stream.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_blur": gaussian_blur,
    "gaussian_noise": gaussian_noise,
    "jpeg": jpeg,
    "brightness_contrast": brightness_contrast,
    "stain_shift": stain_shift,
    "rotation": rotation,
}


def corrupt(
    images: np.ndarray,
    name: str,
    seed: int = 0,
    *,
    symmetry: str = "dihedral",
    colour: str = "shift",
) -> np.ndarray:
    """``images`` (uint8 N x H x W x 3, or one H x W x 3) under corruption ``name``, seeded;
    the rotation and the stain shift change only what the images' ``symmetry`` and ``colour``
    allow (``trainer.config``).

    Raises ValueError for an unknown name or images that are not uint8 RGB.
    """
    fn = CORRUPTIONS.get(name)
    if fn is None:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    array = np.asarray(images)
    single = array.ndim == 3
    batch = array[None] if single else array
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(
            f"corrupt() needs uint8 N x H x W x 3 (or H x W x 3) images, got "
            f"{array.dtype} {array.shape}"
        )
    if len(batch) == 0:
        return batch.copy() if not single else array.copy()
    rng = np.random.default_rng((int(seed), list(CORRUPTIONS).index(name)))
    if name == "rotation":
        out = rotation(batch, rng, upright=symmetry != "dihedral")
    elif name == "stain_shift":
        out = stain_shift(batch, rng, hue=colour != "keep")
    else:
        out = fn(batch, rng)
    return out[0] if single else out


def corrupt_each(
    images: np.ndarray, seed: int = 0, *, symmetry: str = "dihedral", colour: str = "shift"
) -> tuple[np.ndarray, np.ndarray]:
    """Every image under one corruption, the kinds dealt out evenly in a seeded order.

    Returns the corrupted copy and each image's corruption index into ``CORRUPTIONS``. One
    copy of the set instead of one per corruption: a robustness score for a sixth of the cost,
    with every kind still weighing equally (up to one image).
    """
    array = np.asarray(images)
    names = list(CORRUPTIONS)
    rng = np.random.default_rng((int(seed), len(names)))
    kinds = rng.permutation(np.arange(len(array)) % len(names))
    out = np.empty_like(array)
    for k, name in enumerate(names):
        chosen = np.flatnonzero(kinds == k)
        if chosen.size:
            out[chosen] = corrupt(array[chosen], name, seed=seed, symmetry=symmetry, colour=colour)
    return out, kinds
