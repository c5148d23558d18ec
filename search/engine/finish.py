"""The end of a ``--budget`` run: the search's clock, then the final model trained and exported.

``BudgetClock`` tells the coordinator how long the search may still run: the budget, less what
the study spent in earlier runs (user attribute ``seconds_spent``, kept up to date while it
runs), less this run's time so far, less the reserve for the final model (``search.policy.budget``),
re-planned whenever the best trial changes. ``train_final`` then trains the best trial's
configuration at full fidelity on all images but the calibration slice and writes the same folder ``search.export`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.cli import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, UsageError
from search.data import DataError, load_dataset
from search.engine.final_records import (
    KeepRecording,
    check_record,
    handed_over,
    model_record,
    recorded_check,
)
from search.engine.request import RunRequest
from search.engine.signals import InterruptOnStop
from search.policy import final as final_policy
from search.policy.budget import (
    FINAL_OVERHEAD_SECONDS,
    MAX_FINAL_SHARE,
    FinalPlan,
    final_reserve,
)
from search.policy.final import (
    STRONGER_THAN_TAIL,
    TAIL_LEVEL,
    TAIL_SHARE,
    FinalRecipe,
    RecipeCheck,
    RecipeInputs,
)
from storage import redact
from storage.records import (
    FINISHED,
    LIMIT_FLAGS,
    best_complete,
    cost_name,
    cost_of,
    direction_sign,
    fold_results,
    objective_cost,
)
from storage.study import FINAL_CHECK, FINAL_RECIPE
from trainer.config import MAX_IMAGE_SIZE
from trainer.errors import TrialFailed

if TYPE_CHECKING:
    from trainer.final import Tail

log = logging.getLogger(__name__)

SPENT = "seconds_spent"  # study user attribute: wall seconds of every --budget run so far
RECORD_EVERY = 15.0  # seconds between two writes of SPENT


def final_tail(augment: str) -> Tail | None:
    """The light tail a final model trained under ``augment`` ends on, if any."""
    from trainer.final import Tail

    return Tail(TAIL_LEVEL, TAIL_SHARE) if augment in STRONGER_THAN_TAIL else None


@dataclass(frozen=True)
class FinalSetup:
    """Where the final model goes, what it trains on (and the search's copy and folds, for the
    paired check), and at which fidelity."""

    out: Path
    data: Any
    inputs: RecipeInputs
    tta: bool | None = None  # --tta/--no-tta; None: the views the final augmentation trained on
    search_data: Any = None
    folds: list[Any] = dataclasses.field(default_factory=list)
    cost: str | None = None  # the study's cost objective, if any
    max_cost: float | None = None  # --max-latency-ms / --max-params: the front's point within it


def final_candidate(
    study: optuna.Study, metric: str, max_cost: float | None = None
) -> FrozenTrial | None:
    """The trial the final model trains: the best complete one (within ``max_cost``, the most
    accurate point of the Pareto front under the limit); before any, the trial (pruned or
    screened) whose finished folds score best, since the final model needs learning curves, not
    a full cross-validation score. None while no fold has finished."""
    best = best_complete(study, max_cost=max_cost)
    if best is not None:
        return best
    scored = []
    sign = direction_sign(study)
    cost = cost_name(study) if max_cost is not None else None
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        measured = cost_of(t, cost) if cost is not None else None
        if max_cost is not None and (measured is None or measured > max_cost):
            continue
        folds = [f for f in fold_results(t) if not f.stopped]
        if folds and "config" in t.user_attrs:
            mean = float(np.mean([f.score(metric) for f in folds]))
            scored.append((sign * mean, -t.number, t))
    return max(scored, key=lambda x: x[:2])[2] if scored else None


def trial_augment(trial: FrozenTrial) -> str:
    return str(dict(trial.user_attrs.get("config", {})).get("augment", trial.params.get("augment")))


def plan_for(trial: FrozenTrial, inputs: RecipeInputs, max_seconds: float | None) -> FinalPlan:
    """The final model of ``trial`` as the budget prices it: the recipe the policy would choose
    (the candidate level while the paired check is still to come) plus that check's cost."""
    folds = [f for f in fold_results(trial) if not f.stopped]
    searched = trial_augment(trial)
    recipe = final_policy.decide(inputs, searched, folds, max_seconds=max_seconds, planning=True)
    plan = recipe.plan
    if final_policy.needs_check(inputs.augment, searched):
        extra = final_policy.check_seconds(
            folds,
            inputs.train_images_per_fold,
            inputs.search_size,
            inputs.search_epochs,
        )
        plan = dataclasses.replace(
            plan,
            seconds=plan.seconds + extra,
            reason=plan.reason + f"; a paired check {extra:.0f} s",
        )
    return plan


class BudgetClock:
    """Seconds left for the search of one ``--budget`` run (see the module docstring)."""

    def __init__(
        self,
        study: optuna.Study,
        budget: float,
        inputs: RecipeInputs,
        clock: Callable[[], float] = time.monotonic,
        max_cost: float | None = None,
    ) -> None:
        self.study = study
        self.budget = budget
        self.inputs = inputs
        self.max_cost = max_cost
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
        best = final_candidate(self.study, self.inputs.metric, self.max_cost)
        if best is not None and best.number != self._planned_for:
            self._planned_for = best.number
            self.plan = plan_for(best, self.inputs, MAX_FINAL_SHARE * self.budget)
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


def run_check(
    stored: Any, data: Any, fold: Any, epochs: int, candidate_epochs: int | None = None
) -> RecipeCheck:
    """The paired check (``search.policy.final``): configuration ``stored`` (a TrialConfig)
    trained on ``fold``'s training images under its own level for ``epochs`` and under the
    candidate for ``candidate_epochs`` (default: as the final model would give it), both scored
    on the fold's held-back images, clean and corrupted (as the study's symmetry and colour
    allow), with the study's views."""
    from search.reporting.scores import predict_probs
    from trainer.corruptions import corrupt_each
    from trainer.final import cosine_schedule, fit_all

    if candidate_epochs is None:
        candidate_epochs = final_policy.check_epochs_of(epochs)
    if candidate_epochs < 1:
        raise ValueError(f"candidate_epochs={candidate_epochs}: the candidate needs an epoch")
    images, labels = data.images[fold.val], data.labels[fold.val]
    corrupted, _ = corrupt_each(images, seed=0, symmetry=stored.symmetry, colour=stored.colour)
    started = time.monotonic()
    predictions = {}
    for level in (stored.augment, final_policy.CANDIDATE):
        n = epochs if level == stored.augment else candidate_epochs
        config = stored.replace(augment=level, epochs=n)
        log.info("paired check: %s, %d epochs on fold 0", level, n)
        fitted = fit_all(
            config,
            data,
            n,
            lr_schedule=cosine_schedule(config, n),
            tail=final_tail(level),
            index=fold.train,
        )
        views = final_policy.views_for(level, stored.symmetry, None)
        predictions[level] = tuple(
            predict_probs(fitted.model, x, tta=views != "none", batch=64, views=views).argmax(1)
            for x in (images, corrupted)
        )
    return final_policy.paired_check(
        stored.augment,
        final_policy.CANDIDATE,
        epochs,
        labels,
        predictions,  # type: ignore[arg-type]
        time.monotonic() - started,
        candidate_epochs,
    )


def _candidate(study: optuna.Study, metric: str, max_cost: float | None = None) -> FrozenTrial:
    """The trial the final model trains; UsageError when no trial finished a fold (within the
    limit)."""
    best = final_candidate(study, metric, max_cost)
    if best is None and max_cost is not None:
        cost = cost_name(study)
        measured = [c for t in study.trials if (c := cost_of(t, cost)) is not None]
        cheapest = f"{min(measured):g}" if measured else "none measured"
        raise UsageError(
            f"no trial of study {study.study_name!r} finished a fold within "
            f"{LIMIT_FLAGS[str(cost)]} {max_cost:g} (the cheapest trial: {cheapest}); raise the "
            "limit, or run again with a larger --budget (the study keeps what was done)"
        )
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
    return best


def _recipe(
    best: FrozenTrial, final: FinalSetup, seconds_left: float, study: optuna.Study | None = None
) -> tuple[FinalRecipe, RecipeCheck | None, float]:
    """The final model's recipe (after the paired check when the policy asks for one; one that
    ``study`` recorded for this trial is reused), the check, and the seconds left for training
    once it is done."""
    from trainer.config import TrialConfig

    started = time.monotonic()
    inputs = final.inputs
    finished = [f for f in fold_results(best) if not f.stopped]
    stored = TrialConfig.from_dict(dict(best.user_attrs["config"]))
    check = None
    epochs = final_policy.check_epochs(inputs.search_epochs)
    if final_policy.needs_check(inputs.augment, stored.augment) and final.folds:
        expected = final_policy.check_seconds(
            finished, inputs.train_images_per_fold, inputs.search_size, inputs.search_epochs
        )
        if (check := recorded_check(study, best.number, epochs)) is not None:
            log.info(
                "final model: %s (recorded by an earlier run, not run again)", check.describe()
            )
        elif final_policy.check_fits(expected, seconds_left):
            check = run_check(stored, final.search_data, final.folds[0], epochs)
            if study is not None:  # decided; written for a resumed run, not a result
                with contextlib.suppress(Exception):
                    study.set_user_attr(FINAL_CHECK, check_record(best.number, epochs, check))
            log.info("final model: %s", check.describe())
        else:
            log.info(
                "final model: no paired check: it would take about %.0f s, more than half of "
                "the %.0f s left, so the final model keeps the searched level %s and all of "
                "that time",
                expected,
                max(0.0, seconds_left),
                stored.augment,
            )
    left = max(60.0, seconds_left - (time.monotonic() - started))
    recipe = final_policy.decide(
        inputs, stored.augment, finished, max_seconds=left, check=check, tta=final.tta
    )
    latency = cost_of(best, final.cost) if final.cost == "latency" else None
    if latency is not None and final.max_cost is not None:
        from trainer.views import VIEW_COUNT

        views = VIEW_COUNT[recipe.views]
        over = views > 1 and views * latency > final.max_cost
        if over and final.tta:
            log.warning(
                "final model: --tta keeps %d views x %.2f ms, over --max-latency-ms %g",
                views,
                latency,
                final.max_cost,
            )
        elif over:
            log.info(
                "final model: no test-time views: %d views x %.2f ms would pass "
                "--max-latency-ms %g",
                views,
                latency,
                final.max_cost,
            )
            recipe = final_policy.decide(
                inputs, stored.augment, finished, max_seconds=left, check=check, tta=False
            )
    return recipe, check, left


def _deadline(recipe: FinalRecipe, data: Any, seed: int, left: float) -> Any:
    """Epochs follow the final model's own epoch times to end with FINAL_OVERHEAD_SECONDS left
    for saving and the report, the calibration's and the cost measurement's forward passes kept
    back in epochs."""
    from trainer.calibrate import INFERENCE_COST, cost_in_epochs
    from trainer.final import Deadline
    from trainer.portable import cost_images
    from trainer.trust import calibration_slice
    from trainer.views import VIEW_COUNT

    held = len(calibration_slice(data.labels, seed))
    views = VIEW_COUNT[recipe.views]
    trained = max(1, len(data) - held)
    measuring = INFERENCE_COST * cost_images(views) / trained
    keep_back = 0.5 + cost_in_epochs(trained, held, views) + measuring
    end = time.monotonic() + left - FINAL_OVERHEAD_SECONDS
    return Deadline(end, recipe.plan.max_epochs, keep_back=keep_back)


def _recipe_record(recipe: FinalRecipe, check: RecipeCheck | None) -> dict[str, Any]:
    """The recipe as config.json's ``recipe`` states it."""
    return {
        "augment": recipe.augment,
        "augment_reason": recipe.augment_reason,
        "tail": list(recipe.tail) if recipe.tail else None,
        "progressive": list(recipe.progressive) if recipe.progressive else None,
        "views": recipe.views,
        "planned_epochs": recipe.plan.epochs,
        "check": check.as_dict() if check else None,
    }


def train_final(
    study: optuna.Study,
    final: FinalSetup,
    *,
    seconds_left: float,
    spec: str,
    storage: str,
    asked: dict[str, Any] | None = None,
) -> tuple[FrozenTrial, FinalRecipe]:
    """Train the best trial at full fidelity in the time left and write the export to
    ``final.out``, the recipe decided by ``search.policy.final`` (after the paired check when
    it asks for one).

    Raises UsageError when the study has no complete trial, TrialFailed or OSError as
    ``search.export`` does. (62 lines: one export's steps in order, each a call.)"""
    from search.data import fingerprint
    from search.engine.model_folder import ExportPlan, export_model

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first TensorFlow import
    from trainer.config import TrialConfig
    from trainer.final import Progressive, Tail, cosine_schedule

    inputs, data = final.inputs, final.data
    best = _candidate(study, inputs.metric, final.max_cost)
    recipe, check, left = _recipe(best, final, seconds_left, study)
    plan = recipe.plan
    stored = TrialConfig.from_dict(dict(best.user_attrs["config"]))
    config = stored.replace(
        image_size=inputs.final_size, epochs=plan.epochs, augment=recipe.augment
    )
    schedule = cosine_schedule(config, plan.epochs)
    export = ExportPlan.from_trial(
        best,
        storage=storage,
        attrs=dict(study.user_attrs),
        study=study.study_name,
        config=config.to_dict(),
        spec=spec,
        fingerprint=fingerprint(data),
        ensemble=False,
        epochs=[plan.epochs],
        schedules=[schedule],
        image_size=inputs.final_size,
        views=recipe.views,
        how=f"chosen by --budget: {plan.reason}; cosine decay from {schedule[0]:.3g}; "
        + recipe.describe(),
        recipe=_recipe_record(recipe, check),
    )
    _say_final(best.number, export, config, data, recipe)
    trained = export_model(
        export,
        config,
        data,
        [],
        final.out,
        deadline=_deadline(recipe, data, stored.seed, left),
        tail=Tail(*recipe.tail) if recipe.tail else None,
        progressive=Progressive(*recipe.progressive) if recipe.progressive else None,
    )
    recipe = dataclasses.replace(recipe, plan=dataclasses.replace(plan, epochs=trained.epochs[0]))
    with contextlib.suppress(Exception):  # a record for the report; the export is what counts
        study.set_user_attr(FINAL_RECIPE, model_record(trained, final.out, config, asked or {}))
    return best, recipe


def _say_final(number: int, export: Any, config: Any, data: Any, recipe: FinalRecipe) -> None:
    from trainer.trust import calibration_slice

    held = len(calibration_slice(data.labels, config.seed))
    log.info(
        "final model: trial %d (%s %.4f, %s %s, symmetry %s, colour %s) on %d images, %s; %s; %s",
        number,
        export.metric,
        export.cv_score(),
        config.backbone,
        config.optimizer,
        config.symmetry,
        config.colour,
        len(data) - held,
        f"{held} held back to calibrate it"
        if held
        else "none held back to calibrate it (too few images: it will not be calibrated)",
        recipe.plan.describe(),
        recipe.describe(),
    )


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def final_setup(
    request: RunRequest,
    name: str,
    plan: Any,
    data: Any,
    folds: list[Any],
    kept: Any,
    size_fixed: bool,
) -> FinalSetup:
    """What a --budget run trains at its end, settled (and the export folder checked) up front.
    With a latency objective the final model keeps the search's size: the latency measured is
    the trials'."""
    cost = objective_cost(plan.objective)
    size_fixed = size_fixed or cost == "latency"
    out = Path(request.export or Path("models") / name).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--export {out} exists and is not a folder; name a folder")
    probe = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    try:  # a file really written and removed: permission bits say nothing to root or on /proc
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--export {out}: cannot write in {probe} ({exc.strerror or exc}); pass a writable "
            "--export DIR"
        ) from exc
    final_data, native = (
        (data, plan.image_size) if size_fixed else _native(request.data, data, kept)
    )
    size = final_policy.final_size(native, plan.image_size, size_fixed)
    if size > MAX_IMAGE_SIZE:
        raise UsageError(
            f"the images are {native}px, and a final model takes at most {MAX_IMAGE_SIZE}px; "
            f"pass --image-size N (N <= {MAX_IMAGE_SIZE}) to train the search and the final "
            "model at that size"
        )
    if native < size:
        log.info(
            "final model at the search's %dpx: the images are %dpx, and the trial was scored at "
            "%dpx",
            size,
            native,
            plan.image_size,
        )
        final_data = data
    train_per_fold = int(np.median([len(f.train) for f in folds]))
    inputs = RecipeInputs(
        search_size=plan.image_size,
        final_size=size,
        search_epochs=plan.epochs,
        train_images_per_fold=train_per_fold,
        all_images=len(final_data),
        metric=plan.metric,
        augment=request.final_augment,
        symmetry=plan.traits.get("symmetry", "dihedral"),
        colour=plan.traits.get("colour", "shift"),
    )
    return FinalSetup(
        out=out,
        data=final_data,
        inputs=inputs,
        tta=request.tta,
        search_data=data,
        folds=folds,
        cost=cost,
        max_cost=request.limits()[cost] if cost else None,
    )


def _native(spec: str, data, kept):
    """The data at its own resolution and that size (the search's copy and size when it has
    none, e.g. mixed sizes)."""
    search_size = int(data.images.shape[1])
    quiet = logging.getLogger("search.data")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the search's read already said what was read
    try:
        native = load_dataset(spec)
    except DataError as exc:
        log.info(
            "final model at the search's %dpx: the data has no single size (%s)", search_size, exc
        )
        return data, search_size
    finally:
        quiet.setLevel(level)
    if kept is not None:
        native = native.subset(kept)
    if len(native) != len(data) or not np.array_equal(native.labels, data.labels):
        return data, search_size
    return native, int(native.images.shape[1])


def asked_for(final: FinalSetup, budget: float, n_trials: int | None) -> dict[str, Any]:
    """What a --budget run is asked for that chooses its final model (FINAL_RECIPE keeps it)."""
    return {
        "budget": budget,
        "final_augment": final.inputs.augment,
        "tta": final.tta,
        "max_cost": final.max_cost,
        "n_trials": n_trials,
    }


def kept_model(
    study: optuna.Study, final: FinalSetup, budget: float, n_trials: int | None
) -> str | None:
    """The line a re-run of a finished --budget command prints instead of working again
    (``final_records.handed_over``), or None."""
    best = final_candidate(study, final.inputs.metric, final.max_cost)
    asked = asked_for(final, budget, n_trials)
    record = handed_over(study, final.out, asked, best.number if best else None)
    if record is None:
        return None
    spent = float(study.user_attrs.get(SPENT, 0.0))
    return (
        f"model: {final.out} (trial {record.get('trial')}, {record.get('epochs')} epochs at "
        f"{record.get('image_size')}px), kept: this study already spent {minutes(spent)} of its "
        f"{minutes(float(record['asked']['budget']))} budget and handed it over, and no flag "
        "that chooses the model changed. Nothing to do; a larger --budget searches on and trains "
        "it again, as does another --export, --final-augment, --tta, cost limit or --n-trials"
    )


def run_final(
    study: optuna.Study, final: FinalSetup, clock: BudgetClock, request: RunRequest
) -> int:
    """Train and export the final model in what is left of the budget; the exit code."""
    clock.record()
    start = time.monotonic()
    try:
        with InterruptOnStop(), KeepRecording(clock.record, RECORD_EVERY):
            best, recipe = train_final(
                study,
                final,
                seconds_left=clock.left(),
                spec=request.data,
                storage=redact(request.storage),
                asked=asked_for(final, clock.budget, request.n_trials),
            )
    except KeyboardInterrupt as exc:
        held = (
            f"{final.out} still holds the model an earlier run exported"
            if (final.out / "config.json").is_file()
            else f"{final.out} holds no complete model"
        )
        print(
            f"\ninterrupted ({exc or 'SIGINT'}) while training the final model: the study is "
            f"kept and {held}; run the same command again to train it (the time spent so far "
            "counts against the budget)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except (TrialFailed, OSError) as exc:
        best_now = final_candidate(study, final.inputs.metric, final.max_cost)
        trial = f" --trial {best_now.number}" if best_now is not None else ""
        print(
            f"error: the final model failed ({type(exc).__name__}: {exc}); the study is kept: "
            f"export by hand with python -m search.export --study {study.study_name}{trial} "
            f"--storage {redact(request.storage)} --out DIR",
            file=sys.stderr,
        )
        return EXIT_FATAL
    finally:
        clock.record()
    print(
        f"model: {final.out} (trial {best.number}, {recipe.plan.epochs} epochs at "
        f"{final.inputs.final_size}px in {minutes(time.monotonic() - start)}; "
        f"{minutes(clock.elapsed())} of the {minutes(clock.budget)} budget used)"
    )
    return EXIT_OK
