"""The final model's whole recipe, decided in one place: augmentation, tail, progressive sizes,
test-time views, epochs and cost.

The final model is the best trial's configuration trained on all images. Where its recipe
differs from the trial's, the difference is earned on this study's own data:

- **Augmentation.** ``--final-augment auto`` (the default) proposes ``CANDIDATE`` (robust: what a
  second camera, scanner or lab changes, within the study's symmetry and colour) only when a
  paired check says so: the trial's configuration is trained twice on the training part of
  fold 0, under its own level and under the candidate (with ``OTHER_AUGMENT_EPOCH_FACTOR`` x the
  epochs, as the final model itself would give it), and both are scored
  on fold 0's held-back images clean and under the six corruptions (``trainer.corruptions``, as
  the study's symmetry and colour allow). The candidate is taken when its mean per-image score
  (clean and corrupted, equally weighted) is above the trial's level by more than one standard
  error of the paired differences; otherwise the trial's own level stays. An explicit level or
  ``searched`` skips the check.
- **Views.** Test-time views are the study's symmetry (``trainer.views``), measured or declared,
  so they only average over turns the data says keep the label; none under ``none``.
- **Epochs.** ``search.policy.budget.plan_final``: the trial's curves, filled to the time kept.
- **Size.** The data's own resolution, never below the search's (the trial was scored there).

Pure: records in, a record out; ``search.engine.finish`` runs the check and the training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.policy.budget import (
    FINAL_OVERHEAD_SECONDS,
    OTHER_AUGMENT_EPOCH_FACTOR,
    SAFETY,
    FinalPlan,
    plan_final,
    seconds_per_image_pixel,
)
from trainer.records import FoldResult

AUTO, SEARCHED = "auto", "searched"
CANDIDATE = "robust"  # the level the paired check weighs against the trial's own
# The check trains each recipe this many times the search's epochs per fold (at least
# MIN_CHECK_EPOCHS): a stronger level needs longer than the search's short folds to show (set
# before measuring; bench/final_check.py measures the check at these values: docs/constants.md).
CHECK_EPOCH_FACTOR, MIN_CHECK_EPOCHS = 2, 4
# The check runs only when its expected seconds are at most this share of what is left for the
# final model, so the model it decides for keeps the rest (a rule, not tuned: docs/constants.md).
CHECK_MAX_SHARE = 0.5
# A final model under a level stronger than light ends with its last sixth light, closer to
# clean images (bench/final_constants.py; docs/constants.md).
TAIL_LEVEL, TAIL_SHARE = "light", 1 / 6
STRONGER_THAN_TAIL = ("moderate", "heavy", "robust")
# Larger than the search's size: the first half of the epochs at the search's size, which
# costs less (bench/final_constants.py; docs/constants.md).
PROGRESSIVE_SHARE = 0.5


@dataclass(frozen=True)
class RecipeCheck:
    """The paired check's evidence: two recipes scored on the same held-back images."""

    searched: str  # the trial's level
    candidate: str
    epochs: int  # the trial's level's
    candidate_epochs: int  # the candidate's: OTHER_AUGMENT_EPOCH_FACTOR x epochs in a search
    n_images: int
    searched_clean: float
    searched_corrupted: float
    candidate_clean: float
    candidate_corrupted: float
    gain: float  # mean per-image score difference, candidate - searched
    standard_error: float
    seconds: float

    @property
    def taken(self) -> bool:
        return self.gain > self.standard_error

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()} | {
            "taken": self.taken
        }

    def describe(self) -> str:
        verdict = "taken" if self.taken else "not taken: the trial's own level stays"
        return (
            f"paired check on {self.n_images} held-back images ({self.epochs} epochs, "
            f"{self.candidate_epochs} for {self.candidate}): "
            f"{self.candidate} {self.candidate_clean:.3f} clean / {self.candidate_corrupted:.3f} "
            f"corrupted against {self.searched} {self.searched_clean:.3f} / "
            f"{self.searched_corrupted:.3f}, score {self.gain:+.3f} (se {self.standard_error:.3f}), "
            f"{verdict}"
        )


def check_epochs_of(epochs: int) -> int:
    # The candidate's epochs in the check; at equal epochs it under-trains robust
    # (bench/final_check.py --candidate-epochs 8: docs/constants.md).
    return math.ceil(OTHER_AUGMENT_EPOCH_FACTOR * epochs)


def paired_check(
    searched: str,
    candidate: str,
    epochs: int,
    labels: np.ndarray,
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    seconds: float,
    candidate_epochs: int,
) -> RecipeCheck:
    """The check's record from each recipe's (clean, corrupted) predicted classes; the
    candidate trained ``candidate_epochs``."""
    scores = {}
    for level, (clean, corrupted) in predictions.items():
        scores[level] = ((clean == labels).astype(float) + (corrupted == labels)) / 2.0
    diff = scores[candidate] - scores[searched]
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    acc = {
        lv: (float(np.mean(c == labels)), float(np.mean(k == labels)))
        for lv, (c, k) in predictions.items()
    }
    return RecipeCheck(
        searched,
        candidate,
        epochs,
        candidate_epochs,
        len(labels),
        *acc[searched],
        *acc[candidate],
        float(diff.mean()),
        se,
        seconds,
    )


def needs_check(final_augment: str, trial_augment: str) -> bool:
    """Whether the final augmentation waits for the paired check."""
    return final_augment == AUTO and trial_augment != CANDIDATE


def check_epochs(search_epochs: int, candidate: bool = False) -> int:
    """Epochs the check trains the trial's level (or, ``candidate``, the candidate) for."""
    epochs = max(MIN_CHECK_EPOCHS, CHECK_EPOCH_FACTOR * search_epochs)
    return check_epochs_of(epochs) if candidate else epochs


def check_seconds(
    folds: Sequence[FoldResult], train_images: int, size: int, search_epochs: int
) -> float:
    """The paired check's expected cost: both runs on a fold's training images at the search's
    size, priced from the trial's own epochs."""
    rate = seconds_per_image_pixel(folds, train_images, size)
    per_epoch = rate * train_images * size * size if math.isfinite(rate) else 0.0
    epochs = check_epochs(search_epochs) + check_epochs(search_epochs, candidate=True)
    return SAFETY * (2 * FINAL_OVERHEAD_SECONDS + epochs * per_epoch)


def check_fits(expected_seconds: float, seconds_left: float) -> bool:
    """Whether the paired check, expected to take ``expected_seconds``, fits in what is left."""
    return expected_seconds <= CHECK_MAX_SHARE * seconds_left


def final_augment(requested: str, trial_augment: str, check: RecipeCheck | None) -> tuple[str, str]:
    """The final model's level and why: as requested, or by the paired check under ``auto``."""
    if requested == SEARCHED or (requested == AUTO and trial_augment == CANDIDATE):
        return trial_augment, f"{trial_augment}, as the trial searched"
    if requested != AUTO:
        return requested, f"{requested} (--final-augment; the trial searched {trial_augment})"
    if check is None:
        return trial_augment, f"{trial_augment}, as the trial searched (no check was run)"
    if check.taken:
        return check.candidate, f"{check.candidate} ({check.describe()})"
    return trial_augment, f"{trial_augment}, as the trial searched ({check.describe()})"


def final_size(native: int, search_size: int, fixed: bool) -> int:
    """The final model's input size: the data's own, never below the search's (the trial was
    scored there); ``fixed`` (--image-size) keeps the search's."""
    return search_size if fixed else max(native, search_size)


@dataclass(frozen=True)
class RecipeInputs:
    """What the final recipe is decided from: the search's size, epochs and images beside the
    final model's, the study's metric, and the user's --final-augment, symmetry and colour."""

    search_size: int
    final_size: int
    search_epochs: int
    train_images_per_fold: int
    all_images: int
    metric: str
    augment: str = AUTO  # --final-augment: auto, searched, or a level
    symmetry: str = "dihedral"
    colour: str = "shift"


@dataclass(frozen=True)
class FinalRecipe:
    """Everything the final model trains with, settled before it starts."""

    augment: str
    augment_reason: str
    tail: tuple[str, float] | None  # (level, share) of the last epochs
    progressive: tuple[int, float] | None  # (size, share) of the first epochs
    views: str  # trainer.views.VIEWS
    plan: FinalPlan
    check: RecipeCheck | None = None

    def describe(self) -> str:
        parts = [f"augment {self.augment_reason}"]
        if self.tail:
            parts.append(f"the last {self.tail[1]:.0%} of the epochs {self.tail[0]}")
        if self.progressive:
            parts.append(
                f"the first {self.progressive[1]:.0%} of the epochs at {self.progressive[0]}px"
            )
        parts.append(f"test-time views {self.views}")
        return "; ".join(parts)


def views_for(augment: str, symmetry: str, tta: bool | None) -> str:
    """--tta/--no-tta, or by default the views the level and the symmetry trained on; never
    more than the symmetry allows (its name is its views'). The one rule for every export."""
    if tta is None:
        return "none" if augment == "none" else symmetry
    return symmetry if tta else "none"


def decide(
    inputs: RecipeInputs,
    trial_augment: str,
    folds: Sequence[FoldResult],
    *,
    max_seconds: float | None,
    check: RecipeCheck | None = None,
    tta: bool | None = None,
    planning: bool = False,
) -> FinalRecipe:
    """The final recipe of a trial with ``trial_augment`` and these fold results. ``planning``
    (the budget's reserve, before any check has run) prices the candidate level and the check."""
    if planning and needs_check(inputs.augment, trial_augment):
        augment, why = CANDIDATE, f"{CANDIDATE} if the paired check takes it"
    else:
        augment, why = final_augment(inputs.augment, trial_augment, check)
    progressive = (
        (inputs.search_size, PROGRESSIVE_SHARE) if inputs.search_size < inputs.final_size else None
    )
    plan = plan_final(
        folds,
        metric=inputs.metric,
        search_epochs=inputs.search_epochs,
        search_size=inputs.search_size,
        final_size=inputs.final_size,
        train_images_per_fold=inputs.train_images_per_fold,
        all_images=inputs.all_images,
        max_seconds=max_seconds,
        epoch_factor=OTHER_AUGMENT_EPOCH_FACTOR if augment != trial_augment else 1.0,
        fill=max_seconds is not None,
        progressive_size=progressive[0] if progressive else 0,
        progressive_share=progressive[1] if progressive else 0.0,
    )
    tail = (TAIL_LEVEL, TAIL_SHARE) if augment in STRONGER_THAN_TAIL else None
    views = views_for(augment, inputs.symmetry, tta)
    return FinalRecipe(augment, why, tail, progressive, views, plan, check)
