"""Records of a cleaning run: its options, each removal, each flagged mislabel, the result."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.records import Dataset

EXACT_DUPLICATE = "exact_duplicate"  # byte-identical copy, same label: one copy is kept
EXACT_CONFLICT = "exact_conflict"  # byte-identical copies with different labels: all dropped
NEAR_DUPLICATE = "near_duplicate"  # shifted/re-compressed copy, same label: one copy is kept
NEAR_CONFLICT = "near_conflict"  # near copies with different labels: all dropped
OUTLIER = "outlier"  # does not look like the rest of the data set
MISLABEL = "mislabel"  # the quick model confidently disagrees (removed only when asked)
REASONS: tuple[str, ...] = (
    EXACT_DUPLICATE,
    EXACT_CONFLICT,
    NEAR_DUPLICATE,
    NEAR_CONFLICT,
    OUTLIER,
    MISLABEL,
)
REASON_TEXT: dict[str, str] = {
    EXACT_DUPLICATE: "exact duplicate (same label, one copy kept)",
    EXACT_CONFLICT: "exact duplicate with conflicting labels (all copies dropped)",
    NEAR_DUPLICATE: "near duplicate (same label, one copy kept)",
    NEAR_CONFLICT: "near duplicate with conflicting labels (all copies dropped)",
    OUTLIER: "outlier (not like the other images)",
    MISLABEL: "likely mislabel (dropped on request)",
}


@dataclass(frozen=True)
class CleanOptions:
    """What the detectors look for; defaults chosen on the real file by bench/cleaning.py
    (docs/cleaning.md), ``outlier_neighbors`` and ``mislabel_max_label_prob`` set before
    measuring (docs/constants.md).

    near_distance: pHash Hamming distance (bits of 64) that makes two images candidates.
    near_correlation: Pearson correlation (best over small shifts) that confirms a candidate.
    outlier_threshold: an image is an outlier when its mean distance to its
        ``outlier_neighbors`` nearest images (in median/MAD-standardised colour and texture
        features) exceeds this many times the median such distance. ``math.inf`` turns it off.
    mislabel_confidence: flag when the quick model gives another class at least this...
    mislabel_max_label_prob: ...and the image's own label less than this.
    drop_mislabeled: remove flagged mislabels too (otherwise they are only reported).
    folds, seed: the stratified k-fold of the mislabel model.
    """

    near_distance: int = 10
    near_correlation: float = 0.93
    outlier_threshold: float = 6.0
    outlier_neighbors: int = 5
    mislabel_confidence: float = 0.8
    mislabel_max_label_prob: float = 0.05
    drop_mislabeled: bool = False
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("near_distance", self.near_distance, 0, 64)
        _check_unit("near_correlation", self.near_correlation, low_open=True)
        if not (isinstance(self.outlier_threshold, (int, float)) and self.outlier_threshold > 0):
            raise ValueError(
                f"outlier_threshold={self.outlier_threshold!r}: pass a positive number (times "
                "the typical neighbour distance, e.g. 6), or math.inf to keep every image"
            )
        _check_int("outlier_neighbors", self.outlier_neighbors, 1, 100)
        _check_unit("mislabel_confidence", self.mislabel_confidence, low_open=True)
        _check_unit("mislabel_max_label_prob", self.mislabel_max_label_prob, low_open=True)
        _check_int("folds", self.folds, 2, 20)
        if not isinstance(self.drop_mislabeled, bool):
            raise ValueError(f"drop_mislabeled={self.drop_mislabeled!r}: pass True or False")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if math.isinf(self.outlier_threshold):
            data["outlier_threshold"] = None  # JSON has no infinity
        return data


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r} is not an integer: pass {low}..{high}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside {low}..{high}")


def _check_unit(name: str, value: object, low_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} is not a number: pass a value in (0, 1]")
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ValueError(f"{name}={value} is outside (0, 1]")


@dataclass(frozen=True)
class Removal:
    """One removed input image: why, in words, and the other images involved (input indices)."""

    index: int
    reason: str
    detail: str
    label: int
    group: tuple[int, ...] = ()  # for duplicates: every member of the group, this one included
    kept: int | None = None  # for in-class duplicates: the member that was kept
    score: float | None = None  # correlation, outlier score or model probability

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"group": list(self.group)}


@dataclass(frozen=True)
class MislabelFlag:
    """An image the quick model confidently puts in another class than its label."""

    index: int
    label: int
    predicted: int
    p_label: float
    p_predicted: float
    removed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CleanResult:
    """The cleaned data set, which input images it kept, and why the others went.

    ``outlier_scores`` has one entry per input image (NaN where an image was removed before
    the outlier step), so a threshold can be tried without running the detectors again.
    """

    dataset: Dataset
    kept: np.ndarray
    removals: tuple[Removal, ...]
    mislabels: tuple[MislabelFlag, ...]
    summary: dict[str, Any]
    outlier_scores: np.ndarray = field(repr=False)

    def removed_by(self, reason: str) -> np.ndarray:
        """Input indices removed for ``reason``, ascending."""
        return np.array(sorted(r.index for r in self.removals if r.reason == reason), dtype=int)
