"""The fold assignment codec: one character per image naming the fold it validates in.

A study stores its folds once, as this string (user attribute ``fold_of``), and every reader
(the coordinator, each worker, ``search.export``) decodes it here, so all of them train the same
split. One character per fold limits a study to ``MAX_FOLDS`` folds.
"""

from __future__ import annotations

import numpy as np

from trainer.records import Fold

FOLD_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_FOLDS = len(FOLD_DIGITS)


def encode_folds(folds: list[Fold], n: int) -> str:
    """``n`` characters: image i's character names the fold whose validation set holds it."""
    if len(folds) > MAX_FOLDS:
        raise ValueError(f"{len(folds)} folds cannot be stored; at most {MAX_FOLDS}")
    out = np.zeros(n, dtype=np.int64)
    for k, fold in enumerate(folds):
        out[fold.val] = k
    return "".join(FOLD_DIGITS[k] for k in out)


def decode_folds(fold_of: str) -> list[Fold]:
    """The folds an ``encode_folds`` string describes, in order."""
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.frombuffer(FOLD_DIGITS.encode(), dtype=np.uint8)] = np.arange(MAX_FOLDS)
    codes = lookup[np.frombuffer(str(fold_of).encode(), dtype=np.uint8)]
    if len(codes) == 0 or (codes < 0).any():
        raise ValueError(
            "the stored fold assignment is empty or holds characters that name no fold"
        )
    return [
        Fold(train=np.flatnonzero(codes != k), val=np.flatnonzero(codes == k))
        for k in range(int(codes.max()) + 1)
    ]
