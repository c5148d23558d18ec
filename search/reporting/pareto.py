"""The Pareto front of a study with a cost objective (``--objective accuracy,latency|params``):
its rows for search.report's table and the dashboard's note, and its figure."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from search.reporting.canvas import BLUE, ORANGE, Plot, empty, figure, finish
from storage.records import COSTS, LIMIT_FLAGS, cost_name, cost_of, pareto_front, score

HEAD = ("trial", "backbone", "image size", "head width", "augment")  # with score and cost


def front_table(study: optuna.Study) -> tuple[list[str], list[list[str]]]:
    """The front as a table, cheapest first: header and rows of text (number, score, cost and
    what sets the cost)."""
    cost = str(cost_name(study))
    head = [HEAD[0], str(study.user_attrs.get("metric", "score")), COSTS[cost], *HEAD[1:]]
    rows = []
    for t in pareto_front(study):
        config = dict(t.user_attrs.get("config", {}))
        rows.append(
            [
                str(t.number),
                f"{float(score(t) or 0.0):.4f}",
                _cost_text(cost_of(t, cost), cost),
                str(config.get("backbone", t.params.get("backbone", "?"))),
                str(config.get("image_size", "?")),
                str(config.get("head_width", t.params.get("head_width", "?"))),
                str(config.get("augment", t.params.get("augment", "?"))),
            ]
        )
    return head, rows


def _cost_text(value: Any, cost: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ms" if cost == "latency" else f"{int(value):,}"


def front_note(study: optuna.Study) -> str:
    """How to read and use the front: one paragraph."""
    cost = str(cost_name(study))
    return (
        f"Complete trials no other complete trial beats on both the score and {COSTS[cost]}, "
        f"cheapest first. {COSTS[cost]} is measured on each trial's model before it trains"
        + (" (single-image inference on its worker's device, warm)" if cost == "latency" else "")
        + f". Export a point with python -m search.export --trial N, or the most accurate "
        f"within a limit with {LIMIT_FLAGS[cost]}."
    )


def front_markdown(study: optuna.Study) -> list[str]:
    """The dashboard note's section for the front (empty without a cost objective)."""
    if cost_name(study) is None:
        return []
    head, rows = front_table(study)
    lines = ["## Pareto front", "", front_note(study), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows] or ["| - | no complete trial yet |"]
    return [*lines, ""]


def front_plot(study: optuna.Study) -> Plot:
    """Every complete trial's score against its cost, the front joined as a staircase."""
    cost = str(cost_name(study))
    fig, title = figure(8, 4.5), "Pareto front"
    caption = front_note(study)
    done = [
        (c, float(score(t) or 0.0))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if (c := cost_of(t, cost)) is not None and score(t) is not None
    ]
    if not done:
        return empty("pareto", title, caption, fig, "No complete trial has a cost yet.")
    ax = fig.add_subplot()
    ax.scatter(*zip(*done, strict=True), color=BLUE, label=f"complete ({len(done)})", zorder=2)
    front = [(cost_of(t, cost), float(score(t) or 0.0)) for t in pareto_front(study)]
    ax.step(
        *zip(*front, strict=True), where="post", color=ORANGE, marker="o", label="front", zorder=3
    )
    if cost == "latency" or max(c for c, _ in done) > 50 * min(c for c, _ in done):
        ax.set_xscale("log")
    ax.set(xlabel=COSTS[cost], ylabel=str(study.user_attrs.get("metric", "score")))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return finish("pareto", title, caption, fig)
