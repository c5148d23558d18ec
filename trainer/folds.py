"""Stratified k-fold splits, deterministic from a seed, and their stored form.

A study stores its folds once, as one character per image naming the fold it validates in (user
attribute ``fold_of``); every reader (the coordinator, each worker, ``search.export``) decodes
it with ``decode_folds``, so all of them train the same split. One character per fold limits a
study to ``MAX_FOLDS`` folds. numpy only at import (scikit-learn when folds are made).
"""

from __future__ import annotations

import numpy as np

from trainer.errors import InvalidConfig
from trainer.records import Fold


def make_folds(labels: np.ndarray, k: int, seed: int) -> list[Fold]:
    """The same labels, k and seed always give the same folds; every class is in every fold."""
    labels = np.asarray(labels)
    if k < 2:
        raise InvalidConfig(f"folds={k}: cross-validation needs at least 2 folds")
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if smallest < k:
        raise InvalidConfig(
            f"folds={k} but the smallest class has only {smallest} images; use --folds {smallest} "
            "or fewer, or add images to that class"
        )
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        Fold(train=np.sort(tr).astype(np.int64), val=np.sort(va).astype(np.int64))
        for tr, va in splitter.split(np.zeros(len(labels)), labels)
    ]


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
    missing = sorted(set(range(int(codes.max()) + 1)) - set(np.unique(codes).tolist()))
    if missing:
        raise ValueError(f"the stored fold assignment has no images in folds {missing}")
    return [
        Fold(train=np.flatnonzero(codes != k), val=np.flatnonzero(codes == k))
        for k in range(int(codes.max()) + 1)
    ]
