"""What a study did, in words, for the top of its report: the lead sentence and the facts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.reporting.final_model import final_recipe
from search.reporting.trials import leaderboard
from search.reporting.view import STATE_LABELS, StudyView, param, state_label
from search.text import counted
from storage import redact
from storage.records import COSTS, cost_name, count_states, failure_kind, score

FAILURE_KINDS_SHOWN = 3
REASON_CHARS = 200
# fANOVA on fewer complete trials ranks noise as readily as a real effect: no importances below.
MIN_IMPORTANCE_TRIALS = 10


def importance_note(complete: int) -> str:
    """Why parameter importances are not shown for ``complete`` complete trials; empty when
    there are enough."""
    if complete >= MIN_IMPORTANCE_TRIALS:
        return ""
    return (
        f"Parameter importances are not meaningful yet: {counted(complete, 'complete trial')}, "
        f"fewer than the {MIN_IMPORTANCE_TRIALS} that fANOVA needs to tell an effect from noise."
    )


def curves_note(epochs: int | None) -> str:
    """What the per-step curves' x axis is, and why each curve drops back between folds
    (``epochs`` per fold, None where not known)."""
    return (
        "each fold restarts at epoch 0, so the curve steps back at every fold boundary "
        f"(step = fold x {epochs or 'epochs'} + epoch)"
    )


def objective_text(metric: str, study: Any) -> str:
    """``accuracy (maximize)``, what it is a mean of, and the cost beside it, if any."""
    direction = study.directions[0].name.lower()
    text = f"{metric} ({direction}): the mean over folds of each fold's best epoch"
    cost = cost_name(study)
    if cost is not None:
        text += (
            f"; and {COSTS[cost]} (minimize), measured on each trial's model before it trains: "
            "a multi-objective study, whose Pareto front is the result"
        )
    return text


def number(value: Any, digits: int = 4) -> str:
    """A float with ``digits`` decimals; anything else as it is."""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def state_counts(trials: Iterable[FrozenTrial]) -> str:
    """``3 complete, 1 failed, 1 running``: the trials of each state there are, always in the
    order of ``STATE_LABELS`` (complete, pruned, failed, running, waiting); empty for none."""
    counts = Counter(t.state for t in trials)
    order = [*STATE_LABELS, *sorted(set(counts) - set(STATE_LABELS), key=lambda s: s.value)]
    return ", ".join(f"{counts[s]} {state_label(s)}" for s in order if counts[s])


def training_time(trials: Sequence[FrozenTrial]) -> str:
    """The ``seconds`` finished trials recorded, summed, and how many trials that covers: a
    failed or running trial records none, so its time is unknown, not zero."""
    timed = [float(t.user_attrs["seconds"]) for t in trials if "seconds" in t.user_attrs]
    untimed = state_counts(t for t in trials if "seconds" not in t.user_attrs)
    if not timed:
        return f"not recorded ({untimed})" if untimed else "not recorded"
    total, n = f"{sum(timed):.1f} s", len(trials)
    if untimed:
        return f"{total} over {len(timed)} of {counted(n, 'trial')} (not recorded by {untimed})"
    return f"{total} over all {counted(n, 'trial')}" if n > 1 else f"{total} over 1 trial"


def lead(view: StudyView) -> str:
    """What happened, in a sentence or two: trial counts, the best trial, why trials failed."""
    n = len(view.trials)
    if not n:
        return "No trials yet."
    failed = view.of(TrialState.FAIL)
    counts = state_counts(view.trials)
    best = view.ranked()
    if len(failed) == n:
        text = f"{counted(n, 'trial')}, all failed." if n > 1 else "1 trial, and it failed."
    elif not best:
        text = f"{counted(n, 'trial')}, none complete: {counts}."
    else:
        value = number(float(score(best[0]) or 0.0))
        text = (
            f"{counted(n, 'trial')}: {counts}; best trial {best[0].number}, {view.metric} {value}."
        )
    if failed:
        text += f" Failures by kind: {_failure_kinds(failed)}."
    return text


def _failure_kinds(failed: Sequence[FrozenTrial]) -> str:
    """The most common failure kinds, each with its trial count and most common reason."""
    by_kind = Counter(failure_kind(t) for t in failed)
    parts = []
    for kind, n in by_kind.most_common(FAILURE_KINDS_SHOWN):
        reasons = Counter(
            str(t.user_attrs["failure_reason"])
            for t in failed
            if failure_kind(t) == kind and t.user_attrs.get("failure_reason")
        )
        why = ""
        if reasons:
            reason = reasons.most_common(1)[0][0]
            if len(reason) > REASON_CHARS:
                reason = reason[: REASON_CHARS - 1] + "…"
            why = f" ({'e.g. ' if len(reasons) > 1 else ''}{reason})"
        parts.append(f"{kind} in {counted(n, 'trial')}{why}")
    rest = by_kind.most_common()[FAILURE_KINDS_SHOWN:]
    if rest:
        others = sum(n for _, n in rest)
        parts.append(f"and {counted(others, 'trial')} of {counted(len(rest), 'other kind')}")
    return "; ".join(parts)


def weights_fact(study_weights: Any, view: StudyView) -> str:
    """The weights the trials ran (their stored config), with their backbones; the study's
    ``--weights`` is added when the trials did not all run it (a small CNN trains from scratch)."""
    ran: dict[str, Counter[str]] = {}
    for t in view.trials:
        weights = t.user_attrs.get("weights", t.user_attrs.get("config", {}).get("weights"))
        if weights is not None:
            ran.setdefault(str(weights), Counter())[str(param(t, "backbone"))] += 1
    setting = str(study_weights) if study_weights is not None else "?"
    if not ran:
        return f"{setting} (the study's --weights; no trial recorded the weights it ran)"
    if set(ran) == {setting}:
        return setting
    n = {w: sum(c.values()) for w, c in ran.items()}
    parts = []
    for w in sorted(ran, key=lambda w: -n[w]):
        backbones = ", ".join(sorted(ran[w]))
        howmany = counted(n[w], "trial")
        if len(ran) == 1 and n[w] > 1:
            howmany = f"all {howmany}"
        parts.append(f"{w} ({howmany}: {backbones})")
    return f"{', '.join(parts)}; study --weights {setting}"


def study_facts(study: optuna.Study, url: str, view: StudyView) -> list[tuple[str, str]]:
    """The facts table: where the study lives (password redacted), what it searched, what its
    trials ran and how they ended."""
    a = study.user_attrs
    facts = [
        ("storage", redact(url)),
        ("space", str(a.get("space", "?"))),
        ("data", f"{a.get('data', '?')} ({a.get('n_images', '?')} images)"),
        ("classes", ", ".join(map(str, a.get("class_names", []))) or "?"),
        ("folds x epochs", f"{view.folds} x {view.epochs} = {view.budget} fold-epochs per trial"),
        ("search image size", f"{a.get('image_size', '?')} px (every trial trained at it)"),
        ("model input size", _model_size(a)),
        ("objective", objective_text(view.metric, study)),
        ("weights", weights_fact(a.get("weights"), view)),
        ("trials", state_counts(view.trials) or "none"),
    ]
    best = view.ranked()
    if best:
        facts.append(("best", f"trial {best[0].number}: {number(float(score(best[0]) or 0.0))}"))
    facts.append(("training time", training_time(view.trials)))
    c = a.get("cleaning")
    if isinstance(c, dict) and {"n_kept", "n_input"} <= set(c):
        facts.append(("cleaning", f"{c['n_kept']} of {c['n_input']} images kept"))
    elif c is not None:
        facts.append(("cleaning", json.dumps(c)[:300]))
    return facts


def _model_size(attrs: dict[str, Any]) -> str:
    recipe = final_recipe(attrs)
    if recipe is None or "image_size" not in recipe:
        return "no final model recorded (search.run --budget records the one it exports)"
    return f"{recipe['image_size']} px (the exported final model's)"


def _finished_of(finished: int, n_trials: int | None) -> str:
    if n_trials is None:
        return f"{finished} finished"
    if finished > n_trials:
        return f"{finished} finished (more than --n-trials {n_trials})"
    return f"{finished}/{n_trials} finished"


def run_summary(
    study: optuna.Study,
    url: str,
    name: str,
    n_trials: int | None,
    artifacts: str,
    metric: str,
) -> str:
    """What ``search.run`` prints at the end: the counts, the top 5 and the dashboard command
    (``n_trials`` None: no trial count to reach, as with ``--budget`` alone)."""
    counts = count_states(study)
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    lines = [
        f"\nstudy {name!r}: {_finished_of(finished, n_trials)} "
        f"({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned), "
        f"{counts[TrialState.FAIL]} failed"
    ]
    rows = leaderboard(study, top=5)
    if rows:
        lines.append(f"{'trial':>5}  {metric:>9}  backbone            augment   optimizer  lr")
        lines += [
            f"{r['trial']:>5}  {r['value']:9.4f}  {r['backbone']:<18}  {r['augment']:<8}  "
            f"{r['optimizer']:<9}  {r['learning_rate']:.2g}"
            for r in rows
        ]
    lines.append(
        f"dashboard: optuna-dashboard {redact(url)} --artifact-dir {artifacts} "
        "--host 127.0.0.1 --port 8080"
    )
    return "\n".join(lines)
