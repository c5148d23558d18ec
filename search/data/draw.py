"""Vectorised drawing primitives for the demo generator: every function works on a batch.

Shapes are soft masks in [0, 1] over a (B, S, S) grid; the edge is one pixel wide so shapes are
anti-aliased at any image size. Per-image parameters are (B,) arrays, broadcast as (B, 1, 1).
"""

from __future__ import annotations

import numpy as np

F = np.float32
Param = np.ndarray | np.floating | float  # a scalar or a (B, 1, 1) per-image value


def col(x: Param) -> np.ndarray:
    """A per-image parameter as (B, 1, 1) for broadcasting over the pixel grid."""
    return np.asarray(x, dtype=F).reshape(-1, 1, 1)


def soft(signed: np.ndarray, px: Param) -> np.ndarray:
    """Mask from a signed distance (positive inside), one pixel (``px``) of soft edge."""
    return np.clip(F(0.5) + signed / px, F(0.0), F(1.0))


def disc(u: np.ndarray, v: np.ndarray, cu: Param, cv: Param, r: Param, px: Param) -> np.ndarray:
    """Disc of radius ``r`` at (cu, cv)."""
    return soft(r - np.hypot(u - cu, v - cv), px)


def ellipse(
    u: np.ndarray, v: np.ndarray, cu: Param, cv: Param, a: Param, b: Param, px: Param
) -> np.ndarray:
    """Axis-aligned ellipse with semi-axes a (along u) and b (along v); approximate edge."""
    norm = np.hypot((u - cu) / a, (v - cv) / b)
    return soft((F(1.0) - norm) * np.minimum(a, b), px)


def capsule(
    u: np.ndarray,
    v: np.ndarray,
    p0: tuple[Param, Param],
    p1: tuple[Param, Param],
    r: Param,
    px: Param,
) -> np.ndarray:
    """Segment from p0 = (u0, v0) to p1 = (u1, v1), thickened to radius ``r``."""
    (u0, v0), (u1, v1) = p0, p1
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + F(1e-6)), 0.0, 1.0)
    return soft(r - np.hypot(u - (u0 + t * du), v - (v0 + t * dv)), px)


def blur(x: np.ndarray, times: int = 1) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the last two axes, edges replicated."""
    for _ in range(times):
        p = np.pad(x, ((0, 0), (1, 1), (0, 0)), mode="edge")
        x = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) * F(0.25)
        p = np.pad(x, ((0, 0), (0, 0), (1, 1)), mode="edge")
        x = (p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]) * F(0.25)
    return x


def smooth_noise(rng: np.random.Generator, b: int, size: int, cell: int) -> np.ndarray:
    """Blobby noise in [0, 1] with features ``cell`` pixels across, shape (b, size, size).

    Random values on a coarse grid, bilinearly interpolated (separably), so it is smooth at
    any image size.
    """
    cell = max(1, cell)
    n = size // cell + 2
    coarse = rng.random((b, n, n), dtype=F)
    t = (np.arange(size, dtype=F) + F(0.5)) / cell
    i = np.minimum(t.astype(np.int64), n - 2)
    w = (t - i).astype(F)
    rows = coarse[:, i, :] * (1 - w)[None, :, None] + coarse[:, i + 1, :] * w[None, :, None]
    fine = rows[:, :, i] * (1 - w) + rows[:, :, i + 1] * w
    lo = fine.min(axis=(1, 2), keepdims=True)
    hi = fine.max(axis=(1, 2), keepdims=True)
    return (fine - lo) / (hi - lo + F(1e-6))


def granules(rng: np.random.Generator, b: int, size: int, density: Param, grain: int) -> np.ndarray:
    """Sparse dots (a ``density`` fraction of pixels), blurred to ``grain`` pixels across."""
    dots = (rng.random((b, size, size), dtype=F) < col(density)).astype(F)
    out = blur(dots, times=max(1, grain))
    return np.clip(out * F(2.5), 0.0, 1.0)
