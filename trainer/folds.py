"""Stratified k-fold splits, deterministic from a seed (numpy + scikit-learn only)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

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
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        Fold(train=np.sort(tr).astype(np.int64), val=np.sort(va).astype(np.int64))
        for tr, va in splitter.split(np.zeros(len(labels)), labels)
    ]
