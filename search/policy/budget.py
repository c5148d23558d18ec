"""One wall-clock budget for the whole job: the search, then the final model.

``--budget 30m`` is split by measurement, not by a fixed ratio. The final model is the best
trial's configuration trained on all images at full fidelity (the data's own resolution unless
``--image-size`` fixed one) for as many epochs as fit in the time kept for it, from what its
learning curves say it needs up to ``FILL_EPOCH_FACTOR`` x the search's epochs (both x
``OTHER_AUGMENT_EPOCH_FACTOR`` under another augmentation level). Its cost is estimated from the
seconds per image-pixel that trial's own epochs took, so the reserve (within
``MIN_FINAL_SHARE``..``MAX_FINAL_SHARE`` of the budget) follows the incumbent as the search
goes; the search gets the rest. Before any trial has finished, a prior share
(``PRIOR_FINAL_SHARE``) stands in.

Everything here is arithmetic on records: no Optuna, no Keras, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainer.records import FoldResult

# The reserve's and the curve fit's constants below were set before measuring, not tuned; the
# epoch factors were chosen on inner splits (bench/final_constants.py). Each: docs/constants.md.
# Before the first complete trial, reserve this share of the budget for the final model.
PRIOR_FINAL_SHARE = 0.35
# The reserve never takes less or more than these shares of the budget.
MIN_FINAL_SHARE, MAX_FINAL_SHARE = 0.15, 0.6
# Fixed cost of the final phase: building and tracing the model, the BatchNorm refresh, saving.
FINAL_OVERHEAD_SECONDS = 20.0
# The estimate is raised by this factor: an overrun costs the user, an underrun only epochs.
SAFETY = 1.15
# A learning curve has converged when the fitted remaining gain is below this (score units).
CONVERGED_GAIN = 0.005
# From its learning curves alone the final model takes at least this many times the epochs its
# best fold needed, at most MAX_EPOCH_FACTOR times the search's epochs per fold.
MIN_EPOCH_FACTOR, MAX_EPOCH_FACTOR = 1.5, 6
# Filling the time kept for it, the final model grows to at most this many times the search's
# epochs per fold (x OTHER_AUGMENT_EPOCH_FACTOR): a long cosine run keeps gaining past what
# short constant-rate curves show (bench/final_constants.py; docs/constants.md).
FILL_EPOCH_FACTOR = 12
# A final model trained under another augmentation level than its trial (``--final-augment``,
# robust by default) needs this many times the epochs its trial's curves say: stronger
# augmentation converges later (bench/final_constants.py; docs/constants.md).
OTHER_AUGMENT_EPOCH_FACTOR = 2.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"30m"`` -> 1800.0; ``s``, ``m``, ``h`` or plain seconds; raises ValueError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text).lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write seconds (1800) or a number with s, m or h "
            "(90s, 30m, 1.5h)"
        )
    seconds = float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1.0)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds


def saturating_fit(curve: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``y(e) = a - b * exp(-(e + 1) / tau)`` over epochs e = 0, 1, ...

    Returns (a, b, tau). ``tau`` is searched on a log grid (0.3 to 60 epochs), (a, b) solved
    linearly for each; with fewer than 3 points the curve is taken as still rising by its last
    step, with tau the number of epochs seen.
    """
    y = np.asarray(curve, dtype=np.float64)
    e = np.arange(1, len(y) + 1, dtype=np.float64)
    if len(y) < 3:
        gain = float(y[-1] - y[0]) if len(y) > 1 else 0.1
        return float(y[-1]) + max(gain, 0.0), max(gain, 0.0) + 1e-9, float(len(y))
    best = (math.inf, float(y[-1]), 0.0, 1.0)
    for tau in np.geomspace(0.3, 60.0, 80):
        basis = np.stack([np.ones_like(e), -np.exp(-e / tau)], axis=1)
        (a, b), *_ = np.linalg.lstsq(basis, y, rcond=None)
        sse = float(np.sum((basis @ np.array([a, b]) - y) ** 2))
        if b >= 0 and sse < best[0]:
            best = (sse, float(a), float(b), float(tau))
    return best[1], best[2], best[3]


def epochs_to_converge(
    folds: Sequence[FoldResult], metric: str, search_epochs: int, factor: float = 1.0
) -> tuple[int, str]:
    """Epochs the final model should train, from the trial's validation curves, and why.

    The fold curves (the running best, so a noisy epoch does not count as a drop) are averaged
    and fitted with ``saturating_fit``; the answer is the epoch where the fitted remaining gain
    falls under ``CONVERGED_GAIN``, at least ``MIN_EPOCH_FACTOR`` x the epochs the folds needed
    (the full data set and a decaying schedule), at most ``MAX_EPOCH_FACTOR`` x the search's;
    all of it times ``factor`` (``OTHER_AUGMENT_EPOCH_FACTOR`` when the final augmentation is
    another level than the trial's).
    """
    curves = [np.maximum.accumulate([getattr(e, metric) for e in f.epochs]) for f in folds]
    curves = [c for c in curves if len(c)]
    stronger = f"; x{factor:g} for the stronger final augmentation" if factor != 1.0 else ""
    if not curves:
        epochs = max(1, math.ceil(factor * search_epochs))
        return epochs, "no learning curve recorded: the search's epochs per fold" + stronger
    n = min(len(c) for c in curves)
    mean = np.mean([c[:n] for c in curves], axis=0)
    a, b, tau = saturating_fit(mean)
    needed_by_fit = tau * math.log(b / CONVERGED_GAIN) if b > CONVERGED_GAIN else 1.0
    best_epochs = float(np.median([f.best_epoch + 1 for f in folds]))
    low = MIN_EPOCH_FACTOR * best_epochs
    high = MAX_EPOCH_FACTOR * search_epochs
    epochs = int(math.ceil(factor * min(high, max(low, math.ceil(needed_by_fit)))))
    reason = (
        f"its curves fit {a:.3f} - {b:.3f} exp(-epoch / {tau:.1f}): within "
        f"{CONVERGED_GAIN:g} of the plateau after {needed_by_fit:.0f} epochs; folds kept "
        f"epoch {best_epochs:g} of {search_epochs}{stronger}"
    )
    return max(1, epochs), reason


@dataclass(frozen=True)
class FinalPlan:
    """How the final model will be trained and what it is expected to cost."""

    image_size: int
    epochs: int
    seconds_per_epoch: float
    seconds: float  # expected, with the fixed overhead and the safety factor
    reason: str
    max_epochs: (
        int  # the epochs a final model may grow to (``Deadline``): ``epochs`` unless filling
    )
    progressive_size: int = (
        0  # progressive resizing: the first ``progressive_share`` of the epochs at this px
    )
    progressive_share: float = 0.0

    def describe(self) -> str:
        low = (
            f" (the first {self.progressive_share:.0%} at {self.progressive_size}px)"
            if self.progressive_share > 0
            else ""
        )
        return (
            f"{self.epochs} epochs at {self.image_size}px{low}, about "
            f"{self.seconds_per_epoch:.0f} s an epoch, {self.seconds / 60:.1f} min in all "
            f"({self.reason})"
        )


def seconds_per_image_pixel(folds: Sequence[FoldResult], train_images: int, size: int) -> float:
    """Training seconds per image per pixel that these folds' epochs took (first epochs, which
    trace the graph, left out when a fold has more)."""
    rates = []
    for f in folds:
        n = len(f.epochs)
        if n == 0 or f.seconds <= 0:
            continue
        seconds = (f.seconds - f.first_epoch_seconds) / (n - 1) if n > 1 else f.seconds
        rates.append(seconds / max(1, train_images) / (size * size))
    return float(np.median(rates)) if rates else math.nan


def plan_final(
    folds: Sequence[FoldResult],
    *,
    metric: str,
    search_epochs: int,
    search_size: int,
    final_size: int,
    train_images_per_fold: int,
    all_images: int,
    max_seconds: float | None = None,
    epoch_factor: float = 1.0,
    fill: bool = False,
    progressive_size: int = 0,
    progressive_share: float = 0.0,
) -> FinalPlan:
    """The final model's epochs and cost; with ``max_seconds``, epochs are cut to fit it.

    With ``fill`` the final model takes as many epochs as ``max_seconds`` affords, never fewer
    than its curves ask for (unless the time is short) and at most ``FILL_EPOCH_FACTOR`` x the
    search's epochs (x ``epoch_factor``): curves of a few constant-rate epochs stop rising long
    before a long cosine-decayed run under strong augmentation stops gaining. With ``progressive_share`` > 0 that share of the epochs trains at
    ``progressive_size`` px (``trainer.final.Progressive``) and costs accordingly: the seconds an epoch
    are the mean over the run.
    """
    epochs, reason = epochs_to_converge(folds, metric, search_epochs, epoch_factor)
    most = max(epochs, math.ceil(epoch_factor * FILL_EPOCH_FACTOR * search_epochs))
    rate = seconds_per_image_pixel(folds, train_images_per_fold, search_size)
    share = progressive_share if 0 < progressive_size < final_size else 0.0
    pixels = share * progressive_size * progressive_size + (1.0 - share) * final_size * final_size
    per_epoch = rate * all_images * pixels if math.isfinite(rate) else math.nan
    if max_seconds is not None and math.isfinite(per_epoch) and per_epoch > 0:
        affordable = max(1, int((max_seconds / SAFETY - FINAL_OVERHEAD_SECONDS) // per_epoch))
        if affordable < epochs:
            reason += f"; cut from {epochs} to {affordable} epochs to fit the budget"
            epochs = affordable
        elif fill and affordable > epochs:
            grown = min(most, affordable)
            reason += (
                f"; {grown} epochs to use the time kept for it (at most {most}: "
                f"{FILL_EPOCH_FACTOR * epoch_factor:g} x the search's {search_epochs})"
            )
            epochs = grown
    seconds = SAFETY * (FINAL_OVERHEAD_SECONDS + epochs * per_epoch)
    return FinalPlan(
        final_size,
        epochs,
        per_epoch,
        seconds,
        reason,
        most if fill else epochs,
        progressive_size if share else 0,
        share,
    )


def final_reserve(budget: float, plan: FinalPlan | None) -> float:
    """Seconds of ``budget`` kept for the final model: its planned cost, within the shares."""
    if plan is None or not math.isfinite(plan.seconds):
        return PRIOR_FINAL_SHARE * budget
    return min(MAX_FINAL_SHARE * budget, max(MIN_FINAL_SHARE * budget, plan.seconds))
