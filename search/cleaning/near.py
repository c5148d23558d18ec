"""Near duplicates: a perceptual-hash candidate search, then a pixel-level check.

The images of one data set can all look alike (blood cells, for example: a purple nucleus on a beige
background), so a hash alone would pair distinct images. The hash only proposes candidates: pairs
whose 64-bit pHash (signs of the 8 x 8 lowest DCT frequencies of a 32 x 32 grayscale, as in
``imagehash.phash``) differ in at most ``near_distance`` bits, the smallest distance over the first
image's thumbnail moved by -1, 0, +1 pixels (2 px of the 64 x 64 work image; a shifted re-capture
changes many pHash bits). A candidate is confirmed only if the best Pearson correlation of the two
64 x 64 grayscale images over shifts of up to ``MAX_SHIFT`` pixels reaches ``min_correlation``.
Pearson correlation ignores brightness and contrast changes; JPEG re-compression barely lowers
it. A cheap 32 x 32 check first drops candidates that are clearly below the threshold: more than
``COARSE_MARGIN`` below it, more than copies lose at 32 x 32 (bench/cleaning_constants.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dctn

from search.cleaning.pixels import WORK_SIZE, work_gray

HASH_BITS = 64
# pHash variants at thumbnail shifts of -1, 0, +1 (x 2 work pixels) in x and y: without them
# shifted copies miss the candidates (bench/cleaning_constants.py; docs/constants.md).
HASH_SHIFT = 1
MAX_SHIFT = 3  # verification searches shifts of -3..+3 work pixels (about 5% of the frame)
# Over the most correlation a copy loses at 32 x 32 (bench/cleaning_constants.py).
COARSE_MARGIN = 0.08
COARSE_SHIFT = 2  # the 32 x 32 check searches shifts of -2..+2 pixels
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


def thumbnails(work: np.ndarray) -> np.ndarray:
    """float32 N x 64 x 64 work images -> N x 32 x 32 block means."""
    n, size = work.shape[0], work.shape[1]
    f = size // 32
    return work.reshape(n, 32, f, 32, f).mean(axis=(2, 4))


def phash_bits(small: np.ndarray, shift: int = HASH_SHIFT) -> np.ndarray:
    """bool N x S x 64: pHash of each 32 x 32 thumbnail moved by every (dy, dx) in -shift..shift.

    The uncovered edge repeats the border; variant S // 2 is the unshifted hash.
    """
    n = small.shape[0]
    padded = np.pad(small, ((0, 0), (shift, shift), (shift, shift)), mode="edge")
    steps = range(-shift, shift + 1)
    out = np.empty((n, len(steps) ** 2, HASH_BITS), dtype=bool)
    for k, (dy, dx) in enumerate((dy, dx) for dy in steps for dx in steps):
        view = padded[:, shift + dy : shift + dy + 32, shift + dx : shift + dx + 32]
        low = dctn(view, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(n, HASH_BITS)
        out[:, k] = low > np.median(low, axis=1, keepdims=True)
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


def near_pairs(
    images: np.ndarray, near_distance: int, min_correlation: float | None = None
) -> NearPairs:
    """Candidate pairs of ``images`` (uint8 N x H x W x 3) with hash distance and correlation.

    With ``min_correlation``, candidates whose 32 x 32 correlation is more than COARSE_MARGIN
    below it skip the full check and keep that coarse value (still below the threshold).
    """
    work = work_gray(images, WORK_SIZE)
    small = thumbnails(work)
    i, j, d = hash_candidates(phash_bits(small), near_distance)
    corr = np.empty(i.shape[0], dtype=np.float32)
    for start in range(0, i.shape[0], _PAIR_CHUNK):
        sl = slice(start, start + _PAIR_CHUNK)
        corr[sl] = best_correlation(small[i[sl]], small[j[sl]], max_shift=COARSE_SHIFT)
    fine = np.arange(i.shape[0])
    if min_correlation is not None:
        fine = np.flatnonzero(corr >= min_correlation - COARSE_MARGIN)
    for start in range(0, fine.shape[0], _PAIR_CHUNK):
        k = fine[start : start + _PAIR_CHUNK]
        corr[k] = best_correlation(work[i[k]], work[j[k]])
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
