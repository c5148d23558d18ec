"""A synthetic, blood-smear-like 8-class data set, so the whole tool runs with no download.

Each image shows pale pink erythrocytes (with a lighter centre) on a beige or, now and then,
grey-lavender background, and one class-specific cell near the middle: its size, cytoplasm
colour, granules and nucleus shape follow the textbook look of each BloodMNIST class (see
``_STYLES``). Position, rotation, size, stain colour and intensity, lobe count and chromatin
texture vary per image, and pixel noise is added, so the task is learnable but not trivial.

Colours are mixed as stain absorbance (Beer-Lambert): overlapping things darken as on a smear.
Everything is vectorised over a batch of images; the same (n, image_size, seed) gives
byte-identical images with the same numpy build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from search.data.classes import BLOODMNIST_CLASSES, PBC_CLASS_COUNTS
from search.data.draw import F, capsule, col, disc, ellipse, granules, smooth_noise, soft
from search.data.errors import DataError
from search.data.images import check_image_size
from trainer.records import Dataset

RGB = tuple[float, float, float]
# (u, v, pixel size, rng, batch) -> soft mask (B, S, S); u, v in units of the cell radius.
Shape = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator, int], np.ndarray]

_LIGHT: np.ndarray = np.array((250.0, 243.0, 243.0), dtype=F)  # illumination, RGB


def _absorb(rgb: RGB) -> np.ndarray:
    """Absorbance that turns the illumination into ``rgb``."""
    return -np.log(np.asarray(rgb, dtype=F) / _LIGHT)


def make_demo(n: int = 1600, image_size: int = 64, seed: int = 0) -> Dataset:
    """``n`` synthetic blood-cell images, image_size x image_size, in BloodMNIST class order.

    Class sizes follow the PBC data set's (imbalanced) class frequencies, every class at least
    one image; the images come shuffled. Deterministic in (n, image_size, seed).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < len(BLOODMNIST_CLASSES):
        raise DataError(
            f"n={n!r} demo images", "demo data", f"ask for at least {len(BLOODMNIST_CLASSES)}"
        )
    size = check_image_size(image_size)
    if size is None:
        raise DataError("image_size=None", "demo data", "pass the image size in pixels, e.g. 64")
    rng = np.random.default_rng(seed)
    counts = class_counts(int(n))
    chunk = max(16, 2_000_000 // (size * size))  # bounds memory at large image sizes
    images, labels = [], []
    for label, (name, count) in enumerate(zip(BLOODMNIST_CLASSES, counts, strict=True)):
        for start in range(0, count, chunk):
            b = min(chunk, count - start)
            images.append(_render(_STYLES[name], b, size, rng))
            labels.append(np.full(b, label, dtype=np.int64))
    order = rng.permutation(int(n))
    return Dataset(np.concatenate(images)[order], np.concatenate(labels)[order], BLOODMNIST_CLASSES)


def class_counts(n: int) -> tuple[int, ...]:
    """Split ``n`` over the classes in PBC proportions (largest remainder, at least 1 each)."""
    freq = np.asarray(PBC_CLASS_COUNTS, dtype=np.float64)
    k = len(freq)
    share = freq / freq.sum() * (n - k)
    base = np.floor(share).astype(int)
    extra = np.argsort(-(share - base), kind="stable")[: n - k - int(base.sum())]
    base[extra] += 1
    return tuple(int(c) + 1 for c in base)


@dataclass(frozen=True)
class _Style:
    """How one class looks: cell radius (image half-widths), colours, granules, nucleus."""

    radius: float
    cytoplasm: RGB
    nucleus_rgb: RGB
    granule_rgb: RGB
    granule_density: float  # fraction of pixels seeding a granule
    granules_on_top: bool  # granules cover the nucleus too (basophil, platelet)
    chromatin: float  # nucleus texture amplitude
    nucleus: Shape
    body: Shape | None = None  # default: a round cell with a slightly irregular outline


def _round_body(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    a2, a3 = col(rng.uniform(0.0, 0.07, b)), col(rng.uniform(0.0, 0.04, b))
    p2, p3 = col(rng.uniform(0, np.pi, b)), col(rng.uniform(0, np.pi, b))
    phi = np.arctan2(v, u)
    edge = 1 + a2 * np.cos(2 * (phi - p2)) + a3 * np.cos(3 * (phi - p3))
    return soft(edge - np.hypot(u, v), px)


def _lobes(
    u: np.ndarray,
    v: np.ndarray,
    px: np.ndarray,
    rng: np.random.Generator,
    n: np.ndarray,
    spread: np.ndarray,
    ring: np.ndarray,
    lobe_r: np.ndarray,
    strand_r: np.ndarray,
) -> np.ndarray:
    """``n`` (per image) round lobes along an arc, joined by strands of radius ``strand_r``."""
    b = n.shape[0]
    out = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=F)
    prev = None
    for i in range(int(n.max())):
        active = col(i < n)
        ang = -spread / 2 + spread * (i / np.maximum(n - 1, 1)) + rng.normal(0, 0.12, b)
        cu = col(ring * np.cos(ang) + rng.normal(0, 0.04, b))
        cv = col(ring * np.sin(ang) + rng.normal(0, 0.04, b))
        r = col(lobe_r * rng.uniform(0.85, 1.15, b))
        out = np.maximum(out, disc(u, v, cu, cv, r, px) * active)
        if prev is not None:
            out = np.maximum(out, capsule(u, v, prev, (cu, cv), col(strand_r), px) * active)
        prev = (cu, cv)
    return out


def _neutrophil(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    band = rng.random(b) < 0.3  # band forms: a thick C instead of separate lobes
    n = np.where(band, 5, rng.integers(3, 6, b))
    return _lobes(
        u, v, px, rng, n,
        spread=rng.uniform(2.4, 3.6, b),
        ring=rng.uniform(0.4, 0.5, b),
        lobe_r=np.where(band, 0.2, rng.uniform(0.22, 0.27, b)),
        strand_r=np.where(band, 0.17, 0.05),
    )  # fmt: skip


def _eosinophil(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    return _lobes(
        u, v, px, rng, np.full(b, 2),
        spread=rng.uniform(1.6, 2.2, b),
        ring=rng.uniform(0.36, 0.44, b),
        lobe_r=rng.uniform(0.28, 0.34, b),
        strand_r=np.full(b, 0.06),
    )  # fmt: skip


def _monocyte(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    body = ellipse(
        u, v, 0.0, -0.08, col(rng.uniform(0.6, 0.72, b)), col(rng.uniform(0.48, 0.58, b)), px
    )
    notch = disc(u, v, col(rng.normal(0, 0.08, b)), col(rng.uniform(0.38, 0.5, b)),
                 col(rng.uniform(0.26, 0.34, b)), px)  # fmt: skip
    return body * (1 - notch)


def _lymphocyte(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    r = rng.uniform(0.76, 0.86, b)
    return ellipse(
        u, v, col(rng.uniform(0.04, 0.14, b)), 0.0, col(r), col(r * rng.uniform(0.9, 1.0, b)), px
    )


def _ig(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    a, c = rng.uniform(0.52, 0.62, b), rng.uniform(0.44, 0.52, b)
    cu = rng.uniform(0.15, 0.26, b)
    oval = ellipse(u, v, col(cu), 0.0, col(a), col(c), px)
    indent = col(rng.random(b) < 0.35) * disc(
        u, v, col(cu + a), 0.0, col(rng.uniform(0.15, 0.22, b)), px
    )
    return oval * (1 - indent)


def _erythroblast(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    return disc(u, v, col(rng.uniform(0.0, 0.15, b)), 0.0, col(rng.uniform(0.5, 0.62, b)), px)


def _basophil(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    d = col(rng.uniform(0.12, 0.25, b))
    r = col(rng.uniform(0.36, 0.44, b))
    return np.maximum(disc(u, v, -d, 0.0, r, px), disc(u, v, d, 0.05, r, px))


def _no_nucleus(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    return np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=F)


def _platelet_body(
    u: np.ndarray, v: np.ndarray, px: np.ndarray, rng: np.random.Generator, b: int
) -> np.ndarray:
    m = rng.integers(1, 4, b)  # 1-3 fragments
    out = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=F)
    for i in range(3):
        cu, cv = col(rng.normal(0, 0.55, b)), col(rng.normal(0, 0.55, b))
        r = col(rng.uniform(0.5, 0.8, b))
        out = np.maximum(
            out, ellipse(u, v, cu, cv, r, r * col(rng.uniform(0.7, 1.0, b)), px) * col(i < m)
        )
    return out


# Fields: radius, cytoplasm, nucleus and granule RGB, granule density, granules on top, chromatin,
# nucleus shape (and body shape). Colours were picked from the real 96 x 96 images.
_STYLES: dict[str, _Style] = {
    "basophil": _Style(
        0.29, (175, 135, 195), (70, 30, 120), (50, 15, 95), 0.22, True, 0.2, _basophil
    ),
    "eosinophil": _Style(
        0.35, (234, 184, 168), (75, 30, 130), (220, 126, 104), 0.30, False, 0.3, _eosinophil
    ),
    "erythroblast": _Style(
        0.21, (205, 170, 198), (45, 12, 95), (205, 170, 198), 0.0, False, 0.15, _erythroblast
    ),
    "ig": _Style(0.37, (188, 165, 215), (95, 50, 145), (150, 80, 160), 0.05, False, 0.35, _ig),
    "lymphocyte": _Style(
        0.25, (168, 170, 222), (62, 22, 125), (185, 190, 232), 0.0, False, 0.3, _lymphocyte
    ),
    "monocyte": _Style(
        0.41, (200, 188, 222), (112, 68, 158), (185, 160, 205), 0.03, False, 0.6, _monocyte
    ),
    "neutrophil": _Style(
        0.33, (222, 190, 212), (78, 32, 135), (200, 160, 198), 0.06, False, 0.3, _neutrophil
    ),
    "platelet": _Style(
        0.13,
        (185, 145, 205),
        (185, 145, 205),
        (100, 50, 150),
        0.3,
        True,
        0.0,
        _no_nucleus,
        _platelet_body,
    ),
}

_PLASMA_BEIGE = _absorb((238, 210, 196))
_PLASMA_LAVENDER = _absorb((214, 198, 218))
_RBC = _absorb((222, 168, 172)) - _absorb((238, 210, 196))  # added on top of the plasma
_STRAY_PLATELET = _absorb((160, 110, 185)) - _absorb((238, 210, 196))


def _render(style: _Style, b: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``b`` images of one class as uint8 (b, size, size, 3)."""
    grid = ((np.arange(size, dtype=F) + F(0.5)) / size * 2 - 1).astype(F)
    y, x = grid[None, :, None], grid[None, None, :]
    px = F(2.0 / size)

    lavender = rng.random(b) < 0.15
    plasma = np.where(lavender[:, None], _PLASMA_LAVENDER, _PLASMA_BEIGE)
    plasma = plasma * np.exp(rng.normal(0, 0.12, (b, 3))).astype(F)
    gx, gy = col(rng.normal(0, 0.02, b)), col(rng.normal(0, 0.02, b))
    absorb = plasma[:, None, None, :] + (gx * x + gy * y)[..., None]
    absorb = absorb + _background_cells(rng, b, x, y, px)[..., None] * _RBC
    absorb = absorb + _stray_platelets(rng, b, x, y, px)[..., None] * _STRAY_PLATELET

    cx, cy = col(rng.uniform(-0.15, 0.15, b)), col(rng.uniform(-0.15, 0.15, b))
    theta = rng.uniform(0, 2 * np.pi, b)
    cos, sin = col(np.cos(theta)), col(np.sin(theta))
    radius = col(style.radius * np.exp(rng.normal(0, 0.1, b)))
    u = ((x - cx) * cos + (y - cy) * sin) / radius
    v = (-(x - cx) * sin + (y - cy) * cos) / radius
    pxr = px / radius
    cell = (style.body or _round_body)(u, v, pxr, rng, b)
    nucleus = style.nucleus(u, v, pxr, rng, b) * cell

    # stain: per-channel hue shift plus overall intensity, shared by cytoplasm/nucleus/granules
    stain = np.exp(rng.normal(0, 0.1, (b, 3)) + rng.normal(0, 0.15, (b, 1))).astype(F)
    stain = stain[:, None, None, :]
    cyto = _absorb(style.cytoplasm) * stain
    absorb = absorb * (1 - cell[..., None]) + cell[..., None] * cyto
    if style.granule_density > 0:
        grain = max(1, round(size / 64))
        density = style.granule_density * rng.uniform(0.7, 1.3, b)
        spots = granules(rng, b, size, density, grain) * cell
        extra = np.clip(_absorb(style.granule_rgb) - _absorb(style.cytoplasm), 0, None) * stain
        if not style.granules_on_top:
            absorb = absorb + (spots * (1 - nucleus))[..., None] * extra
    texture = 1 + style.chromatin * (smooth_noise(rng, b, size, max(2, size // 24)) - 0.5) * 2
    nuc = _absorb(style.nucleus_rgb) * stain * texture[..., None]
    absorb = absorb * (1 - nucleus[..., None]) + nucleus[..., None] * nuc
    if style.granule_density > 0 and style.granules_on_top:
        absorb = absorb + spots[..., None] * extra

    light = _LIGHT * np.exp(rng.normal(0, 0.025, (b, 1))).astype(F)
    image = light[:, None, None, :] * np.exp(-absorb)
    image += rng.standard_normal(image.shape, dtype=F) * F(3.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _background_cells(
    rng: np.random.Generator, b: int, x: np.ndarray, y: np.ndarray, px: np.float32
) -> np.ndarray:
    """Erythrocytes: discs with a paler centre, overlaps darker; density (b, S, S)."""
    out = np.zeros((b, y.shape[1], x.shape[2]), dtype=F)
    for _ in range(12):
        cx, cy = col(rng.uniform(-1.2, 1.2, b)), col(rng.uniform(-1.2, 1.2, b))
        r = col(rng.uniform(0.17, 0.24, b))
        show = col(rng.random(b) < 0.85)
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        # body (soft edge) times a paler centre: 1 - 0.6 * clip(1 - d / (0.6 r))
        body = np.clip((r + F(0.5) * px) / px - d / px, 0, 1)
        centre = np.clip(d * (F(1.0) / (F(0.6) * r)) - 1, -1, 0)
        out += body * (1 + F(0.6) * centre) * show
    return out


def _stray_platelets(
    rng: np.random.Generator, b: int, x: np.ndarray, y: np.ndarray, px: np.float32
) -> np.ndarray:
    """Now and then a small platelet off-centre, in any class (a nuisance, as on real smears)."""
    ang, dist = rng.uniform(0, 2 * np.pi, b), rng.uniform(0.55, 0.9, b)
    r = col(rng.uniform(0.03, 0.05, b))
    show = col(rng.random(b) < 0.2)
    return disc(x, y, col(dist * np.cos(ang)), col(dist * np.sin(ang)), r, px) * show
