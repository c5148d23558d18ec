"""Near duplicates: a perceptual-hash candidate search, then a pixel-level check.

Blood-cell images all look alike (a purple nucleus on a beige background), so a hash alone
would pair distinct cells. The hash only proposes candidates: pairs whose 64-bit pHash (signs
of the 8 x 8 lowest DCT frequencies of a 32 x 32 grayscale, as in ``imagehash.phash``) differ
in at most ``near_distance`` bits, the smallest distance over the first image moved by up to
``HASH_SHIFT`` work pixels (a shifted re-capture changes many pHash bits). A candidate is
confirmed only if the best Pearson correlation of the two 64 x 64 grayscale images over shifts
of up to ``MAX_SHIFT`` pixels reaches ``min_correlation``. Pearson correlation ignores
brightness and contrast changes; JPEG re-compression barely lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dctn

from search.cleaning.pixels import WORK_SIZE, work_gray

HASH_BITS = 64
HASH_SHIFT = 2  # pHash variants at shifts of -2, 0, +2 work pixels in x and y
MAX_SHIFT = 3  # verification searches shifts of -3..+3 work pixels (about 5% of the frame)
_BLOCK = 1024
_PAIR_CHUNK = 256


@dataclass(frozen=True)
class NearPairs:
    """Candidate pairs (i < j, indices into the images given) with their evidence."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray  # smallest pHash Hamming distance over the hash shifts
    correlation: np.ndarray  # best Pearson correlation over the verification shifts

    def confirmed(self, near_distance: int, min_correlation: float) -> np.ndarray:
        """Mask of the pairs within ``near_distance`` bits and at least ``min_correlation``."""
        return (self.distance <= near_distance) & (self.correlation >= min_correlation)


def phash_bits(work: np.ndarray, shifts: tuple[int, ...] = (0,)) -> np.ndarray:
    """bool N x S x 64: pHash of each work image moved by every (dy, dx) in ``shifts`` x ``shifts``."""
    n, size = work.shape[0], work.shape[1]
    pad = max((abs(s) for s in shifts), default=0)
    padded = np.pad(work, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    f = size // 32
    out = np.empty((n, len(shifts) ** 2, HASH_BITS), dtype=bool)
    k = 0
    for dy in shifts:
        for dx in shifts:
            view = padded[:, pad + dy : pad + dy + size, pad + dx : pad + dx + size]
            small = view.reshape(n, 32, f, 32, f).mean(axis=(2, 4))
            low = dctn(small, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(n, HASH_BITS)
            out[:, k] = low > np.median(low, axis=1, keepdims=True)
            k += 1
    return out


def hash_candidates(bits: np.ndarray, near_distance: int) -> tuple[np.ndarray, ...]:
    """Pairs (i < j) whose shift-tolerant pHash distance is at most ``near_distance``.

    ``bits`` is N x S x 64 from ``phash_bits``; the unshifted hash is the middle variant.
    Returns (i, j, distance). Works in row blocks, so memory stays O(block x N).
    """
    n, s = bits.shape[:2]
    base = bits[:, s // 2].astype(np.float32)
    inv = 1.0 - base
    rows, cols, dists = [], [], []
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        best = np.full((stop - start, n), HASH_BITS, dtype=np.float32)
        for v in range(s):
            q = bits[start:stop, v].astype(np.float32)
            np.minimum(best, q @ inv.T + (1.0 - q) @ base.T, out=best)
        r, c = np.nonzero(best <= near_distance)
        r = r + start
        keep = r != c
        rows.append(r[keep])
        cols.append(c[keep])
        dists.append(best[r[keep] - start, c[keep]])
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    r, c, d = np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)
    i, j = np.minimum(r, c), np.maximum(r, c)
    # (i, j) and (j, i) both appear when both directions pass: keep the smaller distance.
    key = i.astype(np.int64) * n + j
    order = np.lexsort((d, key))
    key, i, j, d = key[order], i[order], j[order], d[order]
    first = np.ones(key.shape[0], dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return i[first].astype(np.int64), j[first].astype(np.int64), d[first]


def best_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Best Pearson correlation of a[k] and b[k] (float N x S x S) over shifts up to max_shift."""
    n, h, w = a.shape
    m = max_shift
    core = a[:, m : h - m, m : w - m]
    core = core - core.mean(axis=(1, 2), keepdims=True)
    core /= np.sqrt((core**2).sum(axis=(1, 2), keepdims=True)) + 1e-6
    best = np.full(n, -1.0, dtype=np.float32)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            other = b[:, m + dy : h - m + dy, m + dx : w - m + dx]
            other = other - other.mean(axis=(1, 2), keepdims=True)
            norm = np.sqrt((other**2).sum(axis=(1, 2))) + 1e-6
            np.maximum(best, (core * other).sum(axis=(1, 2)) / norm, out=best)
    return best


def near_pairs(images: np.ndarray, near_distance: int) -> NearPairs:
    """Candidate pairs of ``images`` (uint8 N x H x W x 3) with hash distance and correlation."""
    work = work_gray(images, WORK_SIZE)
    bits = phash_bits(work, (-HASH_SHIFT, 0, HASH_SHIFT))
    i, j, d = hash_candidates(bits, near_distance)
    corr = np.empty(i.shape[0], dtype=np.float32)
    for start in range(0, i.shape[0], _PAIR_CHUNK):
        sl = slice(start, start + _PAIR_CHUNK)
        corr[sl] = best_correlation(work[i[sl]], work[j[sl]])
    return NearPairs(i, j, d, corr)


def components(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """Connected components (of size 2 or more) of the graph with edges (i, j), sorted."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in sorted({int(v) for v in i.tolist() + j.tolist()}):
        groups.setdefault(find(x), []).append(x)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
