"""``python -m search.report --study NAME --out DIR``: a self-contained HTML report of a study.

Reads the study (never writes to the storage) and writes ``DIR/report.html`` with every figure
embedded as a data URI, plus the same figures as ``DIR/plots/<name>.png``.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.atomic import atomic_write_bytes
from search.cli import EXIT_FATAL as EXIT_FAILED
from search.cli import EXIT_OK, Parser, setup_logging, usage_error
from search.reporting.final_model import final_recipe, final_rows
from search.reporting.fold_epochs import pruning_rows
from search.reporting.pareto import front_note, front_plot, front_table
from search.reporting.plots import Plot, all_plots
from search.reporting.summary import importance_note, lead, number, study_facts
from search.reporting.trust import trust_html
from search.reporting.view import StudyView, fold_mean, param, state_label
from search.text import counted
from storage import DEFAULT_URL, StorageError, find_storage, redact, storage_errors
from storage.records import cost_name, direction_sign, epoch_values, failure_kind, score

TOP = 10

log = logging.getLogger("search.report")


class UnknownStudy(Exception):
    """The storage holds no study of that name; the message lists the ones it does hold."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m search.report",
        description="Write a self-contained HTML report of a study: leaderboard, optimisation "
        "history, parameter importances, parallel coordinates, per-backbone and "
        "per-augmentation comparison, pruning statistics and learning curves (figures also "
        "as PNG). The storage is only read.",
        epilog="Exit codes: 0 written, 1 the files could not be written, 2 unknown study, "
        "unusable --storage or an --out that is not a writable folder.",
    )
    p.add_argument("--study", required=True, metavar="NAME", help="the study's name in storage")
    p.add_argument(
        "--storage",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"SQLAlchemy URL of the study database (default {DEFAULT_URL})",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.html and plots/")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings")
    return p


def load_study(url: str, name: str) -> optuna.Study:
    """The named study, read-only; a missing database (a SQLite file, or one without Optuna's
    tables) is an error, not a new database."""
    storage = find_storage(url, heartbeat_interval=None, grace_period=None)
    if storage is None:
        raise StorageError(f"no SQLite database or study tables at {redact(url)}; check --storage")
    with storage_errors(url):
        names = sorted(s.study_name for s in storage.get_all_studies())
        if name not in names:
            raise UnknownStudy(
                f"no study {name!r} in {redact(url)}; studies there: {', '.join(names) or 'none'}"
            )
        return optuna.load_study(study_name=name, storage=storage)


def study_view(study: optuna.Study) -> StudyView:
    """Every trial, read once; folds and epochs from the study (guessed for foreign studies)."""
    a, trials = study.user_attrs, tuple(study.get_trials(deepcopy=False))
    last = max((max(steps) for t in trials if (steps := epoch_values(t))), default=0)
    return StudyView(
        trials=trials,
        folds=int(a.get("folds", 1)),
        epochs=int(a.get("epochs", last + 1)),
        metric=str(a.get("metric", "value")),
        maximize=direction_sign(study) > 0,
    )


def param_importances(study: optuna.Study, view: StudyView) -> tuple[dict[str, float], str]:
    """fANOVA importances over complete trials, or empty and a note saying why not."""
    note = importance_note(len(view.ranked()))
    if note:
        return {}, note
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        scores = get_param_importances(
            study,
            evaluator=FanovaImportanceEvaluator(seed=0),
            target=(lambda t: float(score(t) or 0.0)) if len(study.directions) > 1 else None,
        )
    except (ValueError, RuntimeError) as exc:
        return {}, f"Parameter importances could not be computed: {exc}."
    if not scores:
        return {}, "No parameter was sampled by every complete trial, so none can be ranked."
    return {k: float(v) for k, v in scores.items()}, ""


def leaderboard_rows(view: StudyView) -> list[list[str]]:
    """Complete trials best first, then pruned ones by folds finished and their mean so far."""
    pruned = sorted(
        view.of(TrialState.PRUNED),
        key=lambda t: (
            -len(t.user_attrs.get("fold_scores", [])),
            -view.sign * (fold_mean(t) or 0.0),
        ),
    )
    rows = []
    for t in [*view.ranked(), *pruned][:TOP]:
        scores = [float(s) for s in t.user_attrs.get("fold_scores", [])]
        value = number(float(score(t) or 0.0))
        if t.state != TrialState.COMPLETE:
            value = f"{number(fold_mean(t)) if scores else '-'} ({len(scores)}/{view.folds} folds)"
        state = state_label(t.state)
        if "pruned_at" in t.user_attrs:
            state += f": {t.user_attrs['pruned_at']}"
        lr = param(t, "learning_rate")
        rows.append(
            [str(t.number), value, ", ".join(number(s) for s in scores) or "-"]
            + [str(param(t, k)) for k in ("backbone", "augment", "optimizer")]
            + [f"{lr:.3g}" if isinstance(lr, float) else str(lr), state]
        )
    return rows


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f"<p class='note'>{html.escape(empty)}</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:left}th{background:#f0f0f0}figure{margin:1.5em 0}
img{max-width:100%;height:auto;border:1px solid #eee}figcaption,.note{color:#555;font-size:13px}
.lead{font-size:16px;margin:1em 0}"""
SCRIPT = """window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.rendered = String(ok.length);
  document.body.dataset.images = String(imgs.length);
});"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _left_out(plots: Sequence[Plot]) -> str:
    """The figures with nothing to draw, each with the reason its placeholder PNG gives."""
    hidden = [p for p in plots if not p.drawn]
    if not hidden:
        return ""
    named = [  # "Parameter importances need ...": the reason already names the figure
        p.missing if p.missing.lower().startswith(p.title.lower()) else f"{p.title}: {p.missing}"
        for p in hidden
    ]
    items = "".join(f"<li>{html.escape(text)}</li>" for text in named)
    return (
        "<p class='note'>Left out, nothing to draw yet (<code>plots/</code> still has each, "
        f"saying why):</p><ul class='note'>{items}</ul>"
    )


def _failures(view: StudyView) -> tuple[list[list[str]], str]:
    """The failed trials' rows and their section."""
    failed = [
        [str(t.number), str(param(t, "backbone")), failure_kind(t)]
        + [str(t.user_attrs.get(k, "?")) for k in ("failure_reason", "host")]
        for t in view.of(TrialState.FAIL)
    ]
    section = "<h2>Failed trials</h2>\n" + _table(
        ("trial", "backbone", "kind", "reason", "host"), failed, "No trial failed."
    )
    return failed, section


def _figures(view: StudyView, plots: list[Plot]) -> str:
    """The drawn figures inline, the pruning table under the pruning figure."""
    e = html.escape
    prune = [
        [state_label(r.state), str(r.trials)]
        + [str(n) for n in (r.budget.trained, r.budget.reused, r.budget.continued, r.budget.saved)]
        for r in pruning_rows(view.trials, folds=view.folds, epochs=view.epochs)
    ]
    head = ("state", "trials", "fold-epochs trained", "re-used", "continued", "saved")
    after = {"pruning": _table(head, prune, "")}
    return "".join(
        f"<section><h2>{e(p.title)}</h2><figure><img alt='{e(p.title)}' "
        f"src='data:image/png;base64,{base64.b64encode(p.png).decode('ascii')}'>"
        f"<figcaption>{e(p.caption)} (<code>plots/{e(p.name)}.png</code>)</figcaption>"
        f"</figure>{after.get(p.name, '')}</section>"
        for p in plots
        if p.drawn
    )


def render_html(
    name: str,
    facts: list[tuple[str, str]],
    view: StudyView,
    plots: list[Plot],
    final: Sequence[tuple[str, str]] = (),
    trust: str = "",
    front: str = "",
) -> str:
    """The whole page: no external resource, every figure inline as a data URI.

    It opens with the final model a --budget run exported (``final``, when there is one), then
    what happened; without a complete trial the failed-trials table comes next, and figures
    with nothing to draw are left out (listed with the reason)."""
    e = html.escape
    model = (
        "<h2>Final model</h2>\n<p class='note'>What search.run --budget exported last.</p>\n"
        + _table(("final model", "value"), final, "")
        + trust
        if final
        else ""
    )
    board = _table(
        ("trial", "value", "fold scores", "backbone", "augment", "optimizer", "lr", "state"),
        leaderboard_rows(view),
        "No complete or pruned trials yet.",
    )
    failed, failures = _failures(view)
    figures = _figures(view, plots)
    # Without a complete trial the failures are the story: right after the lead.
    first, last = (failures, "") if failed and not view.ranked() else ("", failures)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>Study {e(name)}: report</title><style>{STYLE}</style></head>
<body><h1>Study {e(name)}</h1><p class="note">Generated {stamp} by python -m search.report.</p>
{model}
<p class="lead">{e(lead(view))}</p>
{first}
{_table(("fact", "value"), facts, "")}
{front}
<h2>Leaderboard</h2>
<p class="note">Complete trials by mean fold {e(view.metric)}, then pruned trials by folds
finished (their mean covers only those folds).</p>
{board}
{figures}
{_left_out(plots)}
{last}
<script>{SCRIPT}</script>
</body></html>
"""


def prepare_out(out: Path) -> None:
    """Create ``out/plots`` and prove it is writable before anything is drawn."""
    (out / "plots").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out / "plots"):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = load_study(args.storage, args.study)
        with storage_errors(args.storage):
            view = study_view(study)
    except (StorageError, UnknownStudy) as exc:
        return usage_error(str(exc))
    out = Path(args.out).expanduser()
    try:
        prepare_out(out)
    except OSError as exc:
        return usage_error(f"--out {args.out!r} is not a writable folder ({exc}); choose another")
    scores, note = param_importances(study, view)
    plots = all_plots(view, scores, note)
    front = ""
    if cost_name(study) is not None:  # a multi-objective study: its front leads
        head, rows = front_table(study)
        front = (
            f"<h2>Pareto front</h2>\n<p class='note'>{html.escape(front_note(study))}</p>\n"
            + _table(head, rows, "No complete trial yet.")
        )
        plots.insert(0, front_plot(study))
    facts = study_facts(study, args.storage, view)
    recipe = final_recipe(study.user_attrs)
    trust = trust_html(recipe.get("trust")) if recipe is not None else ""
    page = render_html(args.study, facts, view, plots, final_rows(study.user_attrs), trust, front)
    try:
        for p in plots:
            atomic_write_bytes(out / "plots" / f"{p.name}.png", p.png)
        atomic_write_bytes(out / "report.html", page.encode("utf-8"))
    except OSError as exc:
        print(f"error: cannot write the report ({exc})", file=sys.stderr)
        return EXIT_FAILED
    shown = sum(p.drawn for p in plots)
    log.info(
        "wrote %s (%s on the page, all %d in %s)",
        out / "report.html",
        counted(shown, "figure"),
        len(plots),
        out / "plots",
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
