"""The study report's figures, drawn on matplotlib's Agg canvas (no display, no pyplot).

Each takes a ``StudyView`` and returns a ``Plot`` with PNG bytes; with nothing to draw (no
complete trials, only failures) the PNG says so in words, so ``plots/`` always has every file,
and ``Plot.missing`` carries those words so the page can leave the figure out and say why.
matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from search.reporting.fold_epochs import PruningRow, pruning_rows, trial_budgets
from search.text import counted
from storage.records import FINISHED, fold_results
from trainer.config import AUGMENT_LEVELS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
TOP_CURVES = 5
STATE_COLOURS = {
    TrialState.COMPLETE: "#1f77b4",
    TrialState.PRUNED: "#ff7f0e",
    TrialState.FAIL: "#d62728",
    TrialState.RUNNING: "#7f7f7f",
}
STATE_LABELS = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
CURVE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
BLUE, ORANGE = STATE_COLOURS[TrialState.COMPLETE], STATE_COLOURS[TrialState.PRUNED]
SAVED = "#d9d9d9"
REUSED = "#9ecae1"  # folds re-used from the trial a trial continues: trained there, not here
CONTINUED = "#c7e9c0"  # a screened trial's folds its promoted trial trained: counted there
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1}


@dataclass(frozen=True)
class Plot:
    """One figure of the report: file stem, heading, caption and the PNG itself.

    ``missing`` says why nothing is drawn (the PNG then shows only that text); empty when the
    figure has content."""

    name: str
    title: str
    caption: str
    png: bytes
    missing: str = ""

    @property
    def drawn(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class StudyView:
    """The parts of a study the report reads, fixed once so every figure sees the same trials."""

    trials: tuple[FrozenTrial, ...]
    folds: int
    epochs: int
    metric: str
    maximize: bool = True

    @property
    def budget(self) -> int:
        """Fold-epochs one trial may train: every fold to its last epoch."""
        return self.folds * self.epochs

    def of(self, *states: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state in states]

    def ranked(self) -> list[FrozenTrial]:
        """Complete trials with a value, best first."""
        done = [t for t in self.of(TrialState.COMPLETE) if t.value is not None]
        sign = -1.0 if self.maximize else 1.0
        return sorted(done, key=lambda t: (sign * float(t.value or 0.0), t.number))


def param(trial: FrozenTrial, name: str) -> Any:
    """A sampled parameter, else the value in the trial's stored configuration."""
    if name in trial.params:
        return trial.params[name]
    return trial.user_attrs.get("config", {}).get(name)


def fold_mean(trial: FrozenTrial) -> float | None:
    """The mean of the fold scores a trial finished (None before its first fold ends)."""
    scores = [float(v) for v in trial.user_attrs.get("fold_scores", [])]
    return sum(scores) / len(scores) if scores else None


def state_label(state: TrialState) -> str:
    """``failed``, not ``fail``: how the page names a trial state."""
    return STATE_LABELS.get(state, state.name.lower())


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(name: str, title: str, caption: str, fig: Figure, text: str) -> Plot:
    """A figure that says in words why there is nothing to draw."""
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=13, color="#555555")
    return _plot(name, title, caption, fig, missing=text)


def _plot(name: str, title: str, caption: str, fig: Figure, missing: str = "") -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return Plot(name, title, caption, buf.getvalue(), missing)


def history(view: StudyView) -> Plot:
    """Each trial's value in trial order, the running best, pruned and failed trials marked."""
    fig, title = _figure(9, 4.5), "Optimisation history"
    caption = (
        f"Mean fold {view.metric} of each complete trial and the best so far; pruned trials at "
        "the last score they reported (not comparable to a full mean); failed trials as red "
        "triangles on the axis."
    )
    done = [t for t in view.of(TrialState.COMPLETE) if t.value is not None]
    pruned = [t for t in view.of(TrialState.PRUNED) if t.value is not None]
    failed = view.of(TrialState.FAIL)
    if not done and not pruned:
        text = f"No trial has a score yet ({len(failed)} failed)."
        return _empty("history", title, caption, fig, text)
    ax = fig.add_subplot()
    for trials, marker, label in ((done, "o", "complete"), (pruned, "x", "pruned, last score")):
        colour = STATE_COLOURS[trials[0].state] if trials else None
        xs, ys = [t.number for t in trials], [float(t.value or 0.0) for t in trials]
        ax.scatter(xs, ys, marker=marker, color=colour, label=f"{label} ({len(trials)})", zorder=3)
    if done:
        best = np.maximum if view.maximize else np.minimum
        ys = best.accumulate([float(t.value or 0.0) for t in done]).tolist()
        xs = [t.number for t in done] + [max(t.number for t in view.trials)]
        ax.step(xs, [*ys, ys[-1]], where="post", color="#2ca02c", label="best so far")
    if failed:
        _mark_failed(ax, [t.number for t in failed])
    ax.set(xlabel="trial", ylabel=view.metric)
    _integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _plot("history", title, caption, fig)


def _integer_ticks(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_failed(ax: Axes, numbers: list[int]) -> None:
    """Red triangles on the x axis: failed trials have no score to plot."""
    red, label = STATE_COLOURS[TrialState.FAIL], f"failed ({len(numbers)})"
    at = ax.get_xaxis_transform()
    ax.scatter(numbers, [0.02] * len(numbers), marker="^", color=red, transform=at, label=label)


def importances(scores: dict[str, float], note: str) -> Plot:
    """fANOVA parameter importances as horizontal bars (or the note saying why there are none)."""
    fig, title = _figure(8, 4.5), "Parameter importances"
    caption = note or (
        "Share of the variance of the objective over complete trials explained by each "
        "parameter (Optuna's fANOVA evaluator, seed 0); with few trials this is a rough guide."
    )
    if not scores:
        return _empty("importances", title, caption, fig, note or "No importances.")
    ax = fig.add_subplot()
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names], color=BLUE)
    ax.set(xlabel="importance (fraction of variance)", xlim=(0, max(scores.values()) * 1.1 or 1))
    ax.grid(axis="x", alpha=0.3)
    return _plot("importances", title, caption, fig)


def _axis(name: str, trials: Sequence[FrozenTrial]) -> tuple[list[float], list[tuple[float, str]]]:
    """One parallel-coordinates axis: each trial's position in [0, 1] and the tick labels."""
    dist = next(t.distributions[name] for t in trials if name in t.distributions)
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        span = max(1, len(choices) - 1)
        at = (lambda i: i / span) if len(choices) > 1 else (lambda i: 0.5)
        ys = [at(choices.index(t.params[name])) if name in t.params else math.nan for t in trials]
        return ys, [(at(i), str(c)) for i, c in enumerate(choices)]
    raw = np.array([float(t.params.get(name, math.nan)) for t in trials])
    scaled = np.log10(raw) if getattr(dist, "log", False) else raw
    lo, hi = float(np.nanmin(scaled)), float(np.nanmax(scaled))
    if hi <= lo:  # one value tried: the middle of the axis
        return np.where(np.isnan(scaled), np.nan, 0.5).tolist(), [(0.5, f"{np.nanmin(raw):.3g}")]
    ys = [(float(v) - lo) / (hi - lo) for v in scaled]
    return ys, [(0.0, f"{np.nanmin(raw):.3g}"), (1.0, f"{np.nanmax(raw):.3g}")]


def parallel_coordinates(view: StudyView) -> Plot:
    """Complete trials as lines across one normalised axis per parameter, coloured by value."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, title = _figure(11, 5), "Parallel coordinates"
    caption = (
        "One line per complete trial across every sampled parameter (each axis scaled to the "
        "values tried, log-scaled where sampled on a log scale; categories as evenly spaced "
        f"positions), coloured by mean fold {view.metric}; the best trials are drawn on top."
    )
    done = view.ranked()
    if not done:
        return _empty("parallel", title, caption, fig, "No complete trials yet.")
    names: list[str] = []
    for t in done:
        names += [n for n in t.params if n not in names]
    values = np.array([float(t.value or 0.0) for t in done])
    norm = Normalize(float(values.min()), float(values.max()) + 1e-12)
    cmap = colormaps["viridis"]
    axes = [_axis(n, done) for n in names]
    lo, hi = float(values.min()), float(values.max())
    value_ys = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in values]
    axes.append((value_ys, [(0.0, f"{lo:.4g}"), (1.0, f"{hi:.4g}")] if hi > lo else []))
    ax = fig.add_subplot()
    xs = np.arange(len(axes))
    for i in reversed(range(len(done))):  # worst first, so the best end up on top
        ys = [axis[0][i] for axis in axes]
        ax.plot(xs, ys, color=cmap(norm(values[i])), alpha=0.8, linewidth=1.5)
    for x, (_, ticks) in enumerate(axes):
        ax.axvline(x, color="#444444", linewidth=0.8)
        for y, label in ticks:
            short = label if len(label) <= 11 else label[:10] + "…"
            ax.text(x + 0.03, y, short, fontsize=7, va="center", bbox=LABEL_BOX)
    ax.set_xticks(xs, [*names, view.metric], rotation=30, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(axes) - 0.6)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=view.metric, pad=0.01)
    return _plot("parallel", title, caption, fig)


def by_param(view: StudyView, name: str, title: str, order: Sequence[str] = ()) -> Plot:
    """Box and strip plot of complete trials' values for each value of one parameter."""
    fig = _figure(8, 4.5)
    caption = (
        f"Mean fold {view.metric} of complete trials for each {name} (box: quartiles, dots: "
        "trials); hollow orange circles are pruned trials at the mean of the folds they "
        "finished (none if pruned inside their first fold). Labels count the trials."
    )
    finished = view.of(TrialState.COMPLETE, TrialState.PRUNED)
    seen = {str(param(t, name)) for t in finished}
    cats = [c for c in order if c in seen] + sorted(seen - set(order))
    if not view.ranked():
        return _empty(f"by_{name}", title, caption, fig, "No complete trials yet.")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    groups, labels = [], []
    for i, cat in enumerate(cats):
        vals = [float(t.value or 0.0) for t in view.ranked() if str(param(t, name)) == cat]
        pruned = [t for t in view.of(TrialState.PRUNED) if str(param(t, name)) == cat]
        means = [m for m in map(fold_mean, pruned) if m is not None]
        groups.append(vals)
        labels.append(f"{cat}\n{len(vals)} complete, {len(pruned)} pruned")
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=18, color=BLUE, zorder=3)
        jitter = i + rng.uniform(-0.12, 0.12, len(means))
        ax.scatter(jitter, means, s=22, facecolors="none", edgecolors=ORANGE, zorder=3)
    filled = [i for i, g in enumerate(groups) if g]
    ax.boxplot([groups[i] for i in filled], positions=filled, widths=0.5, showfliers=False)
    ax.set_xticks(range(len(cats)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(cats) - 0.4)
    ax.set_ylabel(view.metric)
    ax.grid(axis="y", alpha=0.3)
    return _plot(f"by_{name}", title, caption, fig)


def pruning(view: StudyView, rows: list[PruningRow]) -> Plot:
    """Fold-epochs trained, re-used, continued and saved per trial against the full budget, and
    by state."""
    from matplotlib.patches import Patch

    fig = _figure(11, 4.5)
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
    caption = (
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
    trials = view.of(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    split = trial_budgets(view.trials, folds=view.folds, epochs=view.epochs)
    parts = [split[t.number] for t in trials]
    if not any(p.trained or p.reused for p in parts):
        text = f"No fold-epoch trained yet ({counted(len(trials), 'finished or failed trial')})."
        return _empty("pruning", "Pruning statistics", caption, fig, text)
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
        _mark_failed(left, failed)
    left.set(xlabel="trial", ylabel="fold-epochs")
    _integer_ticks(left)
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
    return _plot("pruning", "Pruning statistics", caption, fig)


def _fold_lines(trial: FrozenTrial, epochs: int) -> tuple[list[float], list[float]]:
    """Steps and scores with a gap between folds, so each fold is its own segment."""
    xs: list[float] = []
    ys: list[float] = []
    for step, score in sorted(trial.intermediate_values.items()):
        if xs and step // epochs != int(xs[-1]) // epochs:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(step)
        ys.append(score)
    return xs, ys


def learning_curves(view: StudyView) -> Plot:
    """Every trial's validation score per fold and epoch, the best complete trials in colour."""
    fig = _figure(11, 5)
    caption = (
        f"Validation {view.metric} at every epoch of every fold (step = fold x {view.epochs} + "
        f"epoch) for all trials in grey, the {TOP_CURVES} best complete trials in colour; an x "
        "marks where a pruned trial stopped."
    )
    reported = [t for t in view.trials if t.intermediate_values]
    if not reported:
        return _empty("curves", "Learning curves", caption, fig, "No scores reported.")
    ax = fig.add_subplot()
    top = view.ranked()[:TOP_CURVES]
    for t in reported:
        xs, ys = _fold_lines(t, view.epochs)
        if t not in top:
            ax.plot(xs, ys, color="#bbbbbb", linewidth=1, zorder=1)
        if t.state == TrialState.PRUNED:
            ax.plot(xs[-1], ys[-1], "x", color=STATE_COLOURS[TrialState.PRUNED], zorder=2)
    for t, colour in zip(top, itertools.cycle(CURVE_COLOURS), strict=False):
        label = f"trial {t.number}: {t.value:.4f}"
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
    return _plot("curves", "Learning curves", caption, fig)


def top_trials(view: StudyView, n: int = 6) -> Plot:
    """Small multiples: each of the best trials' folds, epoch by epoch, best epochs starred."""
    title = "Best trials, fold by fold"
    caption = (
        f"Validation {view.metric} per epoch for each fold of the {n} best complete trials; a "
        "star marks the epoch each fold kept (early stopping restores the best weights)."
    )
    best = view.ranked()[:n]
    if not best:
        return _empty("top_trials", title, caption, _figure(11, 4), "No complete trials.")
    cols, rows = min(3, len(best)), math.ceil(len(best) / 3)
    fig = _figure(11, 3.2 * rows)
    grid = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, t in zip(grid, best, strict=False):
        kept = {f.fold: f.best_epoch for f in fold_results(t)}
        for fold in range(view.folds):
            steps = sorted(s for s in t.intermediate_values if s // view.epochs == fold)
            epochs = [s - fold * view.epochs for s in steps]
            scores = [t.intermediate_values[s] for s in steps]
            (line,) = ax.plot(epochs, scores, marker=".", label=f"fold {fold}")
            if kept.get(fold) in epochs:
                y = scores[epochs.index(kept[fold])]
                ax.plot(kept[fold], y, "*", markersize=11, color=line.get_color())
        _label(ax, t, view.metric)
    for ax in grid[len(best) :]:
        ax.set_axis_off()
    return _plot("top_trials", title, caption, fig)


def _label(ax: Axes, t: FrozenTrial, metric: str) -> None:
    ax.set_title(
        f"trial {t.number}: {t.value:.4f}\n{param(t, 'backbone')}, {param(t, 'augment')}, "
        f"{param(t, 'optimizer')}",
        fontsize=9,
    )
    ax.set(xlabel="epoch", ylabel=metric)
    _integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def all_plots(view: StudyView, scores: dict[str, float], note: str) -> list[Plot]:
    """Every figure of the report, in the order the page shows them."""
    return [
        history(view),
        importances(scores, note),
        parallel_coordinates(view),
        by_param(view, "backbone", "By backbone"),
        by_param(view, "augment", "By augmentation level", AUGMENT_LEVELS),
        pruning(view, pruning_rows(view.trials, folds=view.folds, epochs=view.epochs)),
        learning_curves(view),
        top_trials(view),
    ]
