"""A synthetic 8-class data set whose classes differ only by orientation (``--data
demo-orientation``): the labels are not safe under flips or quarter turns.

Every image shows one "F" glyph on a textured background; the 8 classes are its 8 dihedral
views. Class ``rot{90k}`` is the upright F turned by k quarter turns the way ``np.rot90`` turns an
array (counter-clockwise on screen), class ``mirror_rot{90k}`` the same after ``np.fliplr``. An F
has no symmetry of its own, so each view is a different class, and rotating or mirroring an image
of one class gives an image of another: a model trained with dihedral augmentation, or averaging
over dihedral test-time views, cannot tell them apart. Position, scale, a small tilt (up to 12
degrees, far from a quarter turn), stroke width, arm lengths, colours, background texture, a few
stray strokes and pixel noise vary per image, so the task is learnable but not trivial.

Vectorised over a batch; the same (n, image_size, seed) gives byte-identical images with the
same numpy build.
"""

from __future__ import annotations

import numpy as np

from search.data.draw import F, capsule, col, smooth_noise
from search.data.errors import DataError
from search.data.images import check_image_size
from trainer.records import Dataset

# Class order: (quarter turns k, mirrored m) = (i % 4, i // 4).
ORIENTATION_CLASSES: tuple[str, ...] = tuple(
    f"{'mirror_' if m else ''}rot{90 * k}" for m in (0, 1) for k in range(4)
)
MAX_TILT = np.deg2rad(12.0)


def orientation_of(label: int) -> tuple[int, bool]:
    """(quarter turns, mirrored) of class ``label``: its images are ``np.rot90(np.fliplr(F), k)``
    of the upright glyph F (``np.fliplr`` only when mirrored)."""
    return label % 4, label >= 4


def class_after(label: int, *, turns: int = 0, mirror: bool = False) -> int:
    """The class an image of ``label`` belongs to after ``np.fliplr`` (if ``mirror``) and then
    ``np.rot90(image, turns)``: the label map that makes flips and turns unsafe here."""
    k, m = orientation_of(label)
    if mirror:  # fliplr(rot90(G, k)) == rot90(fliplr(G), -k)
        k, m = -k, not m
    return (k + turns) % 4 + 4 * int(m)


def make_demo_orientation(n: int = 1600, image_size: int = 64, seed: int = 0) -> Dataset:
    """``n`` images, image_size x image_size, of the 8 orientation classes (balanced, shuffled).

    Deterministic in (n, image_size, seed). Raises DataError for fewer than 8 images or an
    image size below the loaders' minimum.
    """
    k = len(ORIENTATION_CLASSES)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < k:
        raise DataError(f"n={n!r} demo-orientation images", "demo data", f"ask for at least {k}")
    size = check_image_size(image_size)
    if size is None:
        raise DataError("image_size=None", "demo data", "pass the image size in pixels, e.g. 64")
    rng = np.random.default_rng(seed)
    counts = [int(n) // k + (i < int(n) % k) for i in range(k)]
    chunk = max(16, 2_000_000 // (size * size))  # bounds memory at large image sizes
    images, labels = [], []
    for label, count in enumerate(counts):
        for start in range(0, count, chunk):
            b = min(chunk, count - start)
            images.append(_render(label, b, size, rng))
            labels.append(np.full(b, label, dtype=np.int64))
    order = rng.permutation(int(n))
    return Dataset(
        np.concatenate(images)[order], np.concatenate(labels)[order], ORIENTATION_CLASSES
    )


def _glyph_coords(
    label: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel grid -> the glyph's own frame (u right, v down, the F within about [-0.5, 0.5]),
    and the size of one pixel in that frame. The class's view is applied to the pixel
    coordinates: rot90 maps (x, y) to (-y, x), fliplr maps (x, y) to (-x, y)."""
    cx, cy = col(rng.uniform(-0.3, 0.3, b)), col(rng.uniform(-0.3, 0.3, b))
    scale = col(rng.uniform(0.75, 1.15, b))
    px = (x - cx) / scale
    py = (y - cy) / scale
    turns, mirrored = orientation_of(label)
    for _ in range(turns):
        px, py = -py, px
    if mirrored:
        px = -px
    tilt = rng.uniform(-MAX_TILT, MAX_TILT, b)
    cos, sin = col(np.cos(tilt)), col(np.sin(tilt))
    return px * cos - py * sin, px * sin + py * cos, scale


def _render(label: int, b: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``b`` images of class ``label`` as uint8 (b, size, size, 3)."""
    grid = ((np.arange(size, dtype=F) + F(0.5)) / size * 2 - 1).astype(F)
    x, y = grid[None, None, :], grid[None, :, None]
    pixel = F(2.0 / size)
    u, v, scale = _glyph_coords(label, x, y, rng, b)
    px = pixel / scale

    r = col(rng.uniform(0.06, 0.11, b))
    left, top, bottom = col(rng.uniform(-0.3, -0.2, b)), F(-0.5), F(0.5)
    top_arm = col(rng.uniform(0.25, 0.42, b))
    mid_arm, mid_v = col(rng.uniform(0.1, 0.28, b)), col(rng.uniform(-0.08, 0.05, b))
    ink = capsule(u, v, (left, top), (left, bottom), r, px)
    ink = np.maximum(ink, capsule(u, v, (left, top), (top_arm, top), r, px))
    ink = np.maximum(ink, capsule(u, v, (left, mid_v), (mid_arm, mid_v), r, px))

    # Stray strokes anywhere in the frame (drawn in image coordinates, so any direction).
    stray = np.zeros_like(ink)
    for _ in range(3):
        sx, sy = col(rng.uniform(-0.9, 0.9, b)), col(rng.uniform(-0.9, 0.9, b))
        ang, length = rng.uniform(0, 2 * np.pi, b), rng.uniform(0.1, 0.3, b)
        ex, ey = sx + col(length * np.cos(ang)), sy + col(length * np.sin(ang))
        show = col(rng.random(b) < 0.6)
        stroke = capsule(x, y, (sx, sy), (ex, ey), r * scale * F(0.8), pixel) * show
        stray = np.maximum(stray, stroke * col(rng.uniform(0.4, 0.9, b)))

    # Brightness in [0, 1]: a textured background and ink of contrasting brightness.
    back = col(rng.uniform(0.2, 0.8, b))
    texture = (smooth_noise(rng, b, size, max(2, size // 8)) - F(0.5)) * col(
        rng.uniform(0.1, 0.35, b)
    )
    gx, gy = col(rng.normal(0, 0.08, b)), col(rng.normal(0, 0.08, b))
    background = back + texture + gx * x + gy * y
    lighter = back < 0.5
    contrast = rng.uniform(0.25, 0.5, b)
    front = col(np.where(lighter.ravel(), 1, -1) * contrast) + back
    mix = np.maximum(ink, stray)
    grey = background * (1 - mix) + front * mix
    tint = np.exp(rng.normal(0, 0.2, (b, 1, 1, 3))).astype(F)
    image = grey[..., None] * tint * F(255.0)
    image += rng.standard_normal(image.shape, dtype=F) * F(6.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
