"""The study report's figures of trials and folds: pruning statistics, learning curves and the
best trials' folds (``canvas.Plot`` each, as in ``plots``)."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from search.reporting.canvas import (
    BLUE,
    CONTINUED,
    CURVE_COLOURS,
    REUSED,
    SAVED,
    STATE_COLOURS,
    TOP_CURVES,
    Plot,
    empty,
    figure,
    finish,
    integer_ticks,
    mark_failed,
)
from search.reporting.fold_epochs import PruningRow, trial_budgets
from search.reporting.summary import curves_note
from search.reporting.view import StudyView, param, state_label
from search.text import counted
from storage.records import FINISHED, epoch_values, fold_results, score

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _pruning_caption(view: StudyView, rows: list[PruningRow]) -> str:
    """What the pruning figure shows, with the study's totals."""
    finished = [r for r in rows if r.state in FINISHED]
    budget = sum(r.trials for r in finished) * view.budget
    saved = sum(r.budget.saved for r in finished)
    reused = sum(r.budget.reused for r in finished)
    continued = sum(r.budget.continued for r in finished)
    and_reused = (
        f" and re-used {reused} (folds trained by the trial they continue: neither trained "
        "again nor saved)"
        if reused
        else ""
    )
    and_continued = (
        f"; {continued} more were continued (a screened trial's folds, trained by the trial "
        "promoted from it)"
        if continued
        else ""
    )
    return (
        f"Left: each trial's budget of {view.folds} folds x {view.epochs} epochs = "
        f"{view.budget} fold-epochs (dashed line), split into trained (in the colour of the "
        "trial's state: its reported steps, less re-used folds), re-used (light blue: folds a "
        "promoted or retried trial took from the trial it continues, trained there), continued "
        "(light green: folds a screened trial left that the trial promoted from it went on to "
        "train, counted as trained there) and saved (grey: what no trial trained, because the "
        "trial was pruned or its folds stopped early); a failed trial shows only what it "
        "trained and re-used. Each finished trial's four parts add up to its budget. Right: "
        f"totals by state. Finished trials left {saved} of {budget} fold-epochs untrained "
        f"({100 * saved / max(1, budget):.0f}%){and_reused}{and_continued}."
    )


def pruning(view: StudyView, rows: list[PruningRow]) -> Plot:
    """Fold-epochs trained, re-used, continued and saved per trial against the full budget, and
    by state."""
    from matplotlib.patches import Patch

    fig = figure(11, 4.5)
    caption = _pruning_caption(view, rows)
    trials = view.of(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    split = trial_budgets(view.trials, folds=view.folds, epochs=view.epochs)
    parts = [split[t.number] for t in trials]
    if not any(p.trained or p.reused for p in parts):
        text = f"No fold-epoch trained yet ({counted(len(trials), 'finished or failed trial')})."
        return empty("pruning", "Pruning statistics", caption, fig, text)
    left, right = fig.subplots(1, 2, width_ratios=[2.2, 1])
    nums = [t.number for t in trials]
    again = np.array([p.reused for p in parts])
    trained = np.array([p.trained for p in parts])
    later = np.array([p.continued for p in parts])
    left.bar(nums, again, color=REUSED)  # re-used folds are a trial's first folds: at the bottom
    left.bar(nums, trained, bottom=again, color=[STATE_COLOURS[t.state] for t in trials])
    left.bar(nums, later, bottom=again + trained, color=CONTINUED)
    left.bar(nums, [p.saved for p in parts], bottom=again + trained + later, color=SAVED)
    left.axhline(view.budget, color="#444444", linestyle="--", linewidth=0.8)
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    if failed:
        mark_failed(left, failed)
    left.set(xlabel="trial", ylabel="fold-epochs")
    integer_ticks(left)
    states = [s for s in STATE_COLOURS if any(t.state == s for t in trials)]
    handles = [Patch(color=STATE_COLOURS[s], label=state_label(s)) for s in states]
    if again.any():
        handles.append(Patch(color=REUSED, label="re-used"))
    if later.any():
        handles.append(Patch(color=CONTINUED, label="continued"))
    left.legend(handles=[*handles, Patch(color=SAVED, label="saved")], fontsize=8)
    series = [("trained", [r.budget.trained for r in rows], BLUE)]
    if any(r.budget.reused for r in rows):
        series.append(("re-used", [r.budget.reused for r in rows], REUSED))
    if any(r.budget.continued for r in rows):
        series.append(("continued", [r.budget.continued for r in rows], CONTINUED))
    series.append(("saved", [r.budget.saved for r in rows], "#aaaaaa"))
    xs, width = np.arange(len(rows)), 0.8 / len(series)
    for i, (label, heights, colour) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        right.bar(xs + offset, heights, width, label=label, color=colour)
    right.set_xticks(xs, [f"{state_label(r.state)}\n({r.trials})" for r in rows], fontsize=8)
    right.set_ylabel("fold-epochs")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    return finish("pruning", "Pruning statistics", caption, fig)


def _fold_lines(trial: FrozenTrial, epochs: int) -> tuple[list[float], list[float]]:
    """Steps and scores with a gap between folds, so each fold is its own segment."""
    xs: list[float] = []
    ys: list[float] = []
    for step, value in sorted(epoch_values(trial).items()):
        if xs and step // epochs != int(xs[-1]) // epochs:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(step)
        ys.append(value)
    return xs, ys


def learning_curves(view: StudyView) -> Plot:
    """Every trial's validation score per fold and epoch, the best complete trials in colour."""
    fig = figure(11, 5)
    caption = (
        f"Validation {view.metric} at every epoch of every fold for all trials in grey, the "
        f"{TOP_CURVES} best complete trials in colour; an x marks where a pruned trial stopped; "
        f"{curves_note(view.epochs)}."
    )
    reported = [t for t in view.trials if epoch_values(t)]
    if not reported:
        return empty("curves", "Learning curves", caption, fig, "No scores reported.")
    ax = fig.add_subplot()
    top = view.ranked()[:TOP_CURVES]
    for t in reported:
        xs, ys = _fold_lines(t, view.epochs)
        if t not in top:
            ax.plot(xs, ys, color="#bbbbbb", linewidth=1, zorder=1)
        if t.state == TrialState.PRUNED:
            ax.plot(xs[-1], ys[-1], "x", color=STATE_COLOURS[TrialState.PRUNED], zorder=2)
    for t, colour in zip(top, itertools.cycle(CURVE_COLOURS), strict=False):
        label = f"trial {t.number}: {score(t):.4f}"
        ax.plot(*_fold_lines(t, view.epochs), color=colour, linewidth=2, zorder=3, label=label)
    at = ax.get_xaxis_transform()
    for k in range(view.folds):
        ax.axvline(k * view.epochs - 0.5, color="#666666", linestyle=":", linewidth=0.8)
        ax.text((k + 0.5) * view.epochs - 0.5, 1.01, f"fold {k}", ha="center", transform=at)
    ax.set(xlabel="step (fold x epochs + epoch)", ylabel=f"validation {view.metric}")
    ax.set_xlim(-0.5, view.budget - 0.5)
    ax.grid(alpha=0.3)
    if top:
        ax.legend(loc="lower right", fontsize=8)
    return finish("curves", "Learning curves", caption, fig)


def top_trials(view: StudyView, n: int = 6) -> Plot:
    """Small multiples: each of the best trials' folds, epoch by epoch, best epochs starred."""
    title = "Best trials, fold by fold"
    caption = (
        f"Validation {view.metric} per epoch for each fold of the {n} best complete trials; a "
        "star marks the epoch each fold kept (early stopping restores the best weights)."
    )
    best = view.ranked()[:n]
    if not best:
        return empty("top_trials", title, caption, figure(11, 4), "No complete trials.")
    cols, rows = min(3, len(best)), math.ceil(len(best) / 3)
    fig = figure(11, 3.2 * rows)
    grid = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, t in zip(grid, best, strict=False):
        kept = {f.fold: f.best_epoch for f in fold_results(t)}
        for fold in range(view.folds):
            curve = epoch_values(t)
            steps = sorted(s for s in curve if s // view.epochs == fold)
            epochs = [s - fold * view.epochs for s in steps]
            scores = [curve[s] for s in steps]
            (line,) = ax.plot(epochs, scores, marker=".", label=f"fold {fold}")
            if kept.get(fold) in epochs:
                y = scores[epochs.index(kept[fold])]
                ax.plot(kept[fold], y, "*", markersize=11, color=line.get_color())
        _label(ax, t, view.metric)
    for ax in grid[len(best) :]:
        ax.set_axis_off()
    return finish("top_trials", title, caption, fig)


def _label(ax: Axes, t: FrozenTrial, metric: str) -> None:
    ax.set_title(
        f"trial {t.number}: {score(t):.4f}\n{param(t, 'backbone')}, {param(t, 'augment')}, "
        f"{param(t, 'optimizer')}",
        fontsize=9,
    )
    ax.set(xlabel="epoch", ylabel=metric)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
