"""What every figure of the report is drawn with: matplotlib's Agg canvas (no display, no
pyplot), the colours of trial states and fold kinds, and the ``Plot`` each figure returns.
matplotlib is imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optuna.trial import TrialState

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


def figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def empty(name: str, title: str, caption: str, fig: Figure, text: str) -> Plot:
    """A figure that says in words why there is nothing to draw."""
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=13, color="#555555")
    return finish(name, title, caption, fig, missing=text)


def finish(name: str, title: str, caption: str, fig: Figure, missing: str = "") -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return Plot(name, title, caption, buf.getvalue(), missing)


def integer_ticks(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def mark_failed(ax: Axes, numbers: list[int]) -> None:
    """Red triangles on the x axis: failed trials have no score to plot."""
    red, label = STATE_COLOURS[TrialState.FAIL], f"failed ({len(numbers)})"
    at = ax.get_xaxis_transform()
    ax.scatter(numbers, [0.02] * len(numbers), marker="^", color=red, transform=at, label=label)
