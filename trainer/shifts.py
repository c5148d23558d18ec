"""Shifted copies of images: what another lab's microscope, stain or camera does to them, each
well beyond what the ``robust`` augmentation trains on (hue up to 18 degrees, brightness up to
12%, contrast up to 30%, zoom up to 10%), plus images of no kind at all. The export reports the
share of its calibration slice's shifted copies that the in-domain detector flags; the
benchmark (bench/trust.py) adds other kinds of images.

Each shift is deterministic given its seed (numpy and Pillow only).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def stain(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another stain: the colour circle turned by 60-120 degrees (either way), saturation
    scaled by 0.6-1.6."""
    return stain_by(images, rng, (60, 120), (0.6, 1.6))


def illumination(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another lamp: gamma 0.45-0.65 or 1.8-2.6 and a vignette darkening the corners by 30-50%."""
    x = images.astype(np.float32) / 255.0
    n, h, w = x.shape[:3]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
    out = np.empty_like(x)
    for i in range(n):
        gamma = rng.uniform(0.45, 0.65) if rng.random() < 0.5 else rng.uniform(1.8, 2.6)
        fall = 1.0 - rng.uniform(0.3, 0.5) * np.clip(r2 / 2.0, 0, 1)
        out[i] = (x[i] ** gamma) * fall[..., None]
    return _uint8(out * 255.0)


def magnification(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another objective: zoomed in 1.6-2x (centre crop) or out to 0.45-0.6x (the image tiled
    around itself, as a wider field of view shows more cells)."""
    from PIL import Image

    n, h, w = images.shape[:3]
    out = np.empty_like(images)
    for i in range(n):
        img = Image.fromarray(images[i])
        if rng.random() < 0.5:
            z = rng.uniform(1.6, 2.0)
            ch, cw = int(round(h / z)), int(round(w / z))
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC)
            out[i] = np.asarray(img)
        else:
            z = rng.uniform(0.45, 0.6)
            small = np.asarray(img.resize((max(1, int(w * z)), max(1, int(h * z))), Image.LANCZOS))
            reps = (int(np.ceil(h / small.shape[0])) + 1, int(np.ceil(w / small.shape[1])) + 1, 1)
            tiled = np.tile(small, reps)
            top = (tiled.shape[0] - h) // 2
            left = (tiled.shape[1] - w) // 2
            out[i] = tiled[top : top + h, left : left + w]
    return out


def camera(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another camera and lab at once: stain turned 30-60 degrees, gamma 1.4-1.8, slight blur
    and sensor noise."""
    from PIL import Image, ImageFilter

    x = stain_by(images, rng, (30, 60)).astype(np.float32) / 255.0
    x = x ** rng.uniform(1.4, 1.8)
    out = np.empty(images.shape, np.uint8)
    for i in range(len(x)):
        img = Image.fromarray(_uint8(x[i] * 255.0)).filter(ImageFilter.GaussianBlur(1.2))
        noisy = np.asarray(img, np.float32) + rng.normal(0, 6, img.size[::-1] + (3,))
        out[i] = _uint8(noisy)
    return out


_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def stain_by(
    images: np.ndarray,
    rng: np.random.Generator,
    degrees: tuple[float, float],
    saturation: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Each image's colour circle turned by an angle in ``degrees`` (either way) and its chroma
    scaled by a factor in ``saturation``, in YIQ."""
    x = images.astype(np.float32)
    inv = np.linalg.inv(_YIQ)
    out = np.empty_like(x)
    for i in range(len(x)):
        theta = np.deg2rad(rng.uniform(*degrees) * rng.choice([-1, 1]))
        c, s = np.cos(theta), np.sin(theta)
        turn = rng.uniform(*saturation) * np.array([[0, 0, 0], [0, c, -s], [0, s, c]])
        turn[0, 0] = 1.0
        out[i] = x[i] @ (inv @ turn @ _YIQ).T
    return _uint8(out)


def noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """No image at all: smooth random colour fields of the same size."""
    from PIL import Image

    n, h, w = images.shape[:3]
    out = np.empty_like(images)
    for i in range(n):
        coarse = rng.uniform(0, 255, (max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
        out[i] = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))
    return out


SHIFTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "stain": stain,
    "illumination": illumination,
    "magnification": magnification,
    "camera": camera,
    "noise": noise,
}


def shift(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """``images`` (uint8 N x H x W x 3) under the shift ``name``, seeded."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; valid: {', '.join(SHIFTS)}")
    rng = np.random.default_rng((int(seed), list(SHIFTS).index(name), 39))
    return SHIFTS[name](np.asarray(images, np.uint8), rng)
