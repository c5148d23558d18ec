"""The end of a ``--budget`` run: the search's clock, then the final model trained and exported.

``BudgetClock`` tells the coordinator how long the search may still run: the budget, less what
the study spent in earlier runs (user attribute ``seconds_spent``, kept up to date while it
runs), less this run's time so far, less the reserve for the final model (``search.policy.budget``),
re-planned whenever the best trial changes. ``train_final`` then trains the best trial's
configuration at full fidelity on all images and writes the same folder ``search.export`` does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.cli import EXIT_FATAL, EXIT_OK, UsageError
from search.data import DataError, load_dataset
from search.policy.budget import (
    FINAL_OVERHEAD_SECONDS,
    MAX_FINAL_SHARE,
    OTHER_AUGMENT_EPOCH_FACTOR,
    FinalPlan,
    final_reserve,
    plan_final,
)
from storage import redact
from storage.records import FINISHED, best_complete, fold_results
from trainer.errors import TrialFailed

if TYPE_CHECKING:
    from trainer.final import Progressive, Tail

log = logging.getLogger("search.run")

SPENT = "seconds_spent"  # study user attribute: wall seconds of every --budget run so far
RECORD_EVERY = 15.0  # seconds between two writes of SPENT
SEARCHED = "searched"  # --final-augment: keep the trial's augmentation level
# The final model's last sixth of epochs under light augmentation when it trains under a stronger
# level (trainer.final.Tail; chosen on the dev split, see there). A third costs robustness: on an
# inner split of the non-held-out images (72 epochs, 64 px then 96 px) a light third scored 0.966
# clean / 0.899 corrupted against 0.964 / 0.939 for a light sixth.
TAIL_LEVEL, TAIL_SHARE = "light", 1 / 6
STRONGER_THAN_TAIL = ("moderate", "heavy", "robust")
# When the final model trains at a larger size than the search did, its first half of epochs
# trains at the search's size (trainer.final.Progressive): more epochs in the same time. Set
# beforehand, not swept; on the dev split of the real images (starting point, robust + light tail)
# at equal compute: seed 0, 42 such epochs 0.951 clean / 0.920 corrupted against 30 at 96 px
# 0.944 / 0.907; seed 1, 28 against 20: 0.943 / 0.897 against 0.928 / 0.868.
PROGRESSIVE_SHARE = 0.5


def final_tail(augment: str) -> Tail | None:
    """The light tail a final model trained under ``augment`` ends on, if any."""
    from trainer.final import Tail

    return Tail(TAIL_LEVEL, TAIL_SHARE) if augment in STRONGER_THAN_TAIL else None


def final_progressive(fidelity: Fidelity) -> Progressive | None:
    """The progressive resizing of a final model: from the search's size, when it is smaller."""
    from trainer.final import Progressive

    if fidelity.search_size >= fidelity.final_size:
        return None
    return Progressive(fidelity.search_size, PROGRESSIVE_SHARE)


@dataclass(frozen=True)
class FinalSetup:
    """Where the final model goes, what it trains on, and at which fidelity."""

    out: Path
    data: Any
    fidelity: Fidelity
    tta: bool | None = None  # --tta/--no-tta; None: the views the final augmentation trained on


@dataclass(frozen=True)
class Fidelity:
    """What the final model trains on, next to what the search trained on."""

    search_size: int
    final_size: int
    search_epochs: int
    train_images_per_fold: int
    all_images: int
    metric: str
    augment: str = SEARCHED  # the final model's augmentation level, or the trial's own

    def final_augment(self, trial_augment: str) -> str:
        return trial_augment if self.augment == SEARCHED else self.augment


def final_candidate(study: optuna.Study, metric: str) -> FrozenTrial | None:
    """The trial the final model trains: the best complete one; before any, the trial (pruned or
    screened) whose finished folds score best, since the final model needs learning curves, not
    a full cross-validation score. None while no fold has finished."""
    best = best_complete(study)
    if best is not None:
        return best
    scored = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        folds = [f for f in fold_results(t) if not f.stopped]
        if folds and "config" in t.user_attrs:
            scored.append((float(np.mean([f.score(metric) for f in folds])), -t.number, t))
    return max(scored, key=lambda x: x[:2])[2] if scored else None


def plan_for(trial: FrozenTrial, fidelity: Fidelity, max_seconds: float | None) -> FinalPlan:
    """The final model of ``trial``: as many epochs as ``max_seconds`` affords (``plan_final``'s
    ``fill``), from its curves' count up to the cap."""
    folds = [f for f in fold_results(trial) if not f.stopped]
    searched = dict(trial.user_attrs.get("config", {})).get("augment", trial.params.get("augment"))
    other = fidelity.final_augment(str(searched)) != searched
    progressive = final_progressive(fidelity)
    return plan_final(
        folds,
        metric=fidelity.metric,
        search_epochs=fidelity.search_epochs,
        search_size=fidelity.search_size,
        final_size=fidelity.final_size,
        train_images_per_fold=fidelity.train_images_per_fold,
        all_images=fidelity.all_images,
        max_seconds=max_seconds,
        epoch_factor=OTHER_AUGMENT_EPOCH_FACTOR if other else 1.0,
        fill=max_seconds is not None,
        low_size=progressive.size if progressive else 0,
        low_share=progressive.share if progressive else 0.0,
    )


class BudgetClock:
    """Seconds left for the search of one ``--budget`` run (see the module docstring)."""

    def __init__(
        self,
        study: optuna.Study,
        budget: float,
        fidelity: Fidelity,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study = study
        self.budget = budget
        self.fidelity = fidelity
        self.clock = clock
        self.started = clock()
        self.spent_before = float(study.user_attrs.get(SPENT, 0.0))
        self._planned_for: int | None = None
        self._finished = -1  # finished trials when the candidate was last looked for
        self.plan: FinalPlan | None = None
        self._recorded = self.started

    def elapsed(self) -> float:
        """Seconds of the budget spent, earlier runs included."""
        return self.spent_before + self.clock() - self.started

    def left(self) -> float:
        """Seconds of the whole budget left (search and final model)."""
        return self.budget - self.elapsed()

    def reserve(self) -> float:
        # The candidate depends on finished trials only: look again when their number changes,
        # not on every call (the coordinator asks every loop and every epoch).
        finished = len(self.study.get_trials(deepcopy=False, states=FINISHED))
        if finished == self._finished:
            return final_reserve(self.budget, self.plan)
        self._finished = finished
        best = final_candidate(self.study, self.fidelity.metric)
        if best is not None and best.number != self._planned_for:
            self._planned_for = best.number
            self.plan = plan_for(best, self.fidelity, MAX_FINAL_SHARE * self.budget)
            log.info(
                "budget: the final model of trial %d would take %s; %.1f of %.1f min are left",
                best.number,
                self.plan.describe(),
                self.left() / 60,
                self.budget / 60,
            )
        return final_reserve(self.budget, self.plan)

    def search_left(self) -> float:
        """Seconds the search may still run; also records the time spent on the study."""
        now = self.clock()
        if now - self._recorded >= RECORD_EVERY:
            self.record()
        return self.left() - self.reserve()

    def record(self) -> None:
        self._recorded = self.clock()
        try:
            self.study.set_user_attr(SPENT, round(self.elapsed(), 1))
        except Exception as exc:  # the time is a nicety; the storage error surfaces elsewhere
            log.warning("could not record the time spent on the study: %s", exc)


def train_final(
    study: optuna.Study,
    *,
    data: Any,
    folds: list[Any],
    fidelity: Fidelity,
    seconds_left: float,
    out: Path,
    spec: str,
    storage: str,
    tta: bool | None = None,
) -> tuple[FrozenTrial, FinalPlan]:
    """Train the best trial at full fidelity in the time left and write the export to ``out``.

    Raises UsageError when the study has no complete trial, TrialFailed or OSError as
    ``search.export`` does."""
    from search.data import fingerprint
    from search.engine.model_folder import Plan, export_model, views_chosen

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from trainer.config import TrialConfig
    from trainer.final import Deadline, cosine_schedule

    best = final_candidate(study, fidelity.metric)
    if best is None:
        raise UsageError(
            "the budget ran out before any trial finished a fold, so there is no model to "
            "train; run again with a larger --budget (the study keeps what was done)"
        )
    if best.state != TrialState.COMPLETE:
        log.warning(
            "no trial completed within the search's share of the budget: the final model is "
            "trial %d, whose finished folds scored best (it was %s)",
            best.number,
            best.user_attrs.get("pruned_at", "pruned"),
        )
    started = time.monotonic()
    plan = plan_for(best, fidelity, max(60.0, seconds_left))
    # Epochs follow the final model's own epoch times to end with FINAL_OVERHEAD_SECONDS left
    # for saving and the report.
    deadline = Deadline(started + max(60.0, seconds_left) - FINAL_OVERHEAD_SECONDS, plan.most)
    finished = [f for f in fold_results(best) if not f.stopped]
    score = (
        float(best.value)
        if best.value is not None
        else float(np.mean([f.score(fidelity.metric) for f in finished]))
    )
    stored = TrialConfig.from_dict(dict(best.user_attrs["config"]))
    config = TrialConfig.from_dict(
        {
            **stored.to_dict(),
            "image_size": fidelity.final_size,
            "epochs": plan.epochs,
            "augment": fidelity.final_augment(stored.augment),
        }
    )
    schedule = cosine_schedule(config, plan.epochs)
    tail = final_tail(config.augment)
    progressive = final_progressive(fidelity)
    augment = (
        config.augment
        if config.augment == stored.augment
        else f"{config.augment} (--final-augment; the trial searched {stored.augment})"
    )
    if tail is not None:
        augment += f", the last {tail.share:.0%} of the epochs {tail.level}"
    log.info(
        "final model: trial %d (%s %.4f, %s %s, augment %s) on all %d images, %s",
        best.number,
        fidelity.metric,
        score,
        config.backbone,
        config.optimizer,
        augment,
        len(data),
        plan.describe(),
    )
    export = Plan(
        study=study.study_name,
        storage=storage,
        trial=best.number,
        value=score,
        params=dict(best.params),
        config=config.to_dict(),
        attrs=dict(study.user_attrs),
        spec=spec,
        fingerprint=fingerprint(data),
        folds=fold_results(best),
        ensemble=False,
        epochs=[plan.epochs],
        schedules=[schedule],
        image_size=fidelity.final_size,
        views=views_chosen(tta, config.augment),
        how=(
            f"chosen by --budget: {plan.reason}; cosine decay from {schedule[0]:.3g}; "
            f"augment {augment}"
            + (
                f"; the first {progressive.share:.0%} of the epochs at {progressive.size}px"
                if progressive is not None
                else ""
            )
        ),
    )
    trained = export_model(
        export, config, data, folds, out, deadline=deadline, tail=tail, progressive=progressive
    )
    return best, dataclasses.replace(plan, epochs=trained.epochs[0])


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def final_setup(args, name, plan, data, folds, kept, size_fixed: bool) -> FinalSetup:
    """What a --budget run trains at its end, settled (and the export folder checked) up front."""
    out = Path(args.export or Path("models") / name).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--export {out} exists and is not a folder; name a folder")
    probe = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--export {out}: {probe} is not writable; pass a writable --export DIR")
    if size_fixed:
        final_data, size = data, plan.image_size
    else:
        final_data, size = _native(args.data, data, plan.image_size, kept)
    train_per_fold = int(np.median([len(f.train) for f in folds]))
    fidelity = Fidelity(
        search_size=plan.image_size,
        final_size=size,
        search_epochs=plan.epochs,
        train_images_per_fold=train_per_fold,
        all_images=len(final_data),
        metric=plan.metric,
        augment=args.final_augment,
    )
    return FinalSetup(out=out, data=final_data, fidelity=fidelity, tta=args.tta)


def _native(spec: str, data, search_size: int, kept):
    """The data at its own resolution (the search's copy when it has none, e.g. mixed sizes)."""
    try:
        native = load_dataset(spec)
    except DataError as exc:
        log.info(
            "final model at the search's %dpx: the data has no single size (%s)", search_size, exc
        )
        return data, search_size
    if kept is not None:
        native = native.subset(kept)
    if len(native) != len(data) or not np.array_equal(native.labels, data.labels):
        return data, search_size
    return native, int(native.images.shape[1])


def run_final(study: optuna.Study, final: FinalSetup, clock: BudgetClock, args) -> int:
    """Train and export the final model in what is left of the budget; the exit code."""
    clock.record()
    start = time.monotonic()
    try:
        best, plan = train_final(
            study,
            data=final.data,
            folds=[],
            fidelity=final.fidelity,
            seconds_left=clock.left(),
            out=final.out,
            spec=args.data,
            storage=redact(args.storage),
            tta=final.tta,
        )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except (TrialFailed, OSError) as exc:
        print(
            f"error: the final model failed ({type(exc).__name__}: {exc}); the study is kept: "
            f"export by hand with python -m search.export --study {study.study_name} --out DIR",
            file=sys.stderr,
        )
        return EXIT_FATAL
    finally:
        clock.record()
    print(
        f"model: {final.out} (trial {best.number}, {plan.epochs} epochs at "
        f"{final.fidelity.final_size}px in {minutes(time.monotonic() - start)}; "
        f"{minutes(clock.elapsed())} of the {minutes(args.budget)} budget used)"
    )
    return EXIT_OK
