"""The study report's figures of the whole study: history, importances, parallel coordinates
and results by parameter; ``all_plots`` gives every figure (with ``trial_plots``'s) in page order.

Each takes a ``StudyView`` and returns a ``canvas.Plot`` with PNG bytes; with nothing to draw (no
complete trials, only failures) the PNG says so in words, so ``plots/`` always has every file,
and ``Plot.missing`` carries those words so the page can leave the figure out and say why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from search.reporting import trial_plots
from search.reporting.canvas import (
    BLUE,
    LABEL_BOX,
    ORANGE,
    STATE_COLOURS,
    Plot,
    empty,
    figure,
    finish,
    integer_ticks,
    mark_failed,
)
from search.reporting.fold_epochs import pruning_rows
from search.reporting.view import StudyView, fold_mean, param
from storage.records import score
from trainer.config import AUGMENT_LEVELS


def history(view: StudyView) -> Plot:
    """Each trial's value in trial order, the running best, pruned and failed trials marked."""
    fig, title = figure(9, 4.5), "Optimisation history"
    caption = (
        f"Mean fold {view.metric} of each complete trial and the best so far; pruned trials at "
        "the last score they reported (not comparable to a full mean); failed trials as red "
        "triangles on the axis."
    )
    done = [t for t in view.of(TrialState.COMPLETE) if score(t) is not None]
    pruned = [t for t in view.of(TrialState.PRUNED) if score(t) is not None]
    failed = view.of(TrialState.FAIL)
    if not done and not pruned:
        text = f"No trial has a score yet ({len(failed)} failed)."
        return empty("history", title, caption, fig, text)
    ax = fig.add_subplot()
    for trials, marker, label in ((done, "o", "complete"), (pruned, "x", "pruned, last score")):
        colour = STATE_COLOURS[trials[0].state] if trials else None
        xs, ys = [t.number for t in trials], [float(score(t) or 0.0) for t in trials]
        ax.scatter(xs, ys, marker=marker, color=colour, label=f"{label} ({len(trials)})", zorder=3)
    if done:
        best = np.maximum if view.maximize else np.minimum
        ys = best.accumulate([float(score(t) or 0.0) for t in done]).tolist()
        xs = [t.number for t in done] + [max(t.number for t in view.trials)]
        ax.step(xs, [*ys, ys[-1]], where="post", color="#2ca02c", label="best so far")
    if failed:
        mark_failed(ax, [t.number for t in failed])
    ax.set(xlabel="trial", ylabel=view.metric)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return finish("history", title, caption, fig)


def importances(scores: dict[str, float], note: str) -> Plot:
    """fANOVA parameter importances as horizontal bars (or the note saying why there are none)."""
    fig, title = figure(8, 4.5), "Parameter importances"
    caption = note or (
        "Share of the variance of the objective over complete trials explained by each "
        "parameter (Optuna's fANOVA evaluator, seed 0); with few trials this is a rough guide."
    )
    if not scores:
        return empty("importances", title, caption, fig, note or "No importances.")
    ax = fig.add_subplot()
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names], color=BLUE)
    ax.set(xlabel="importance (fraction of variance)", xlim=(0, max(scores.values()) * 1.1 or 1))
    ax.grid(axis="x", alpha=0.3)
    return finish("importances", title, caption, fig)


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

    fig, title = figure(11, 5), "Parallel coordinates"
    caption = (
        "One line per complete trial across every sampled parameter (each axis scaled to the "
        "values tried, log-scaled where sampled on a log scale; categories as evenly spaced "
        f"positions), coloured by mean fold {view.metric}; the best trials are drawn on top."
    )
    done = view.ranked()
    if not done:
        return empty("parallel", title, caption, fig, "No complete trials yet.")
    names: list[str] = []
    for t in done:
        names += [n for n in t.params if n not in names]
    values = np.array([float(score(t) or 0.0) for t in done])
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
    return finish("parallel", title, caption, fig)


def by_param(view: StudyView, name: str, title: str, order: Sequence[str] = ()) -> Plot:
    """Box and strip plot of complete trials' values for each value of one parameter."""
    fig = figure(8, 4.5)
    caption = (
        f"Mean fold {view.metric} of complete trials for each {name} (box: quartiles, dots: "
        "trials); hollow orange circles are pruned trials at the mean of the folds they "
        "finished (none if pruned inside their first fold). Labels count the trials."
    )
    finished = view.of(TrialState.COMPLETE, TrialState.PRUNED)
    seen = {str(param(t, name)) for t in finished}
    cats = [c for c in order if c in seen] + sorted(seen - set(order))
    if not view.ranked():
        return empty(f"by_{name}", title, caption, fig, "No complete trials yet.")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    groups, labels = [], []
    for i, cat in enumerate(cats):
        vals = [float(score(t) or 0.0) for t in view.ranked() if str(param(t, name)) == cat]
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
    return finish(f"by_{name}", title, caption, fig)


def all_plots(view: StudyView, scores: dict[str, float], note: str) -> list[Plot]:
    """Every figure of the report, in the order the page shows them."""
    return [
        history(view),
        importances(scores, note),
        parallel_coordinates(view),
        by_param(view, "backbone", "By backbone"),
        by_param(view, "augment", "By augmentation level", AUGMENT_LEVELS),
        trial_plots.pruning(view, pruning_rows(view.trials, folds=view.folds, epochs=view.epochs)),
        trial_plots.learning_curves(view),
        trial_plots.top_trials(view),
    ]
