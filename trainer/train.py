"""Train and score one configuration by k-fold cross-validation, reporting after every epoch.

One model and one pair of compiled step functions serve all folds of a trial: each fold starts
from the same initial weights and freshly reset optimizers, so fold 2 does not trace the graph
again. Stopping is a returned ``Decision`` from the caller's callbacks, never an exception.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from trainer.backend import check as check_backend
from trainer.batches import image_batches
from trainer.config import MONITORS, Decision, TrialConfig
from trainer.errors import InvalidConfig
from trainer.hooks import TrainHooks
from trainer.loop import (
    ModelRun,
    check_images,
    data_seed,
    oom_as_trial_failure,
    restore,
    snapshot,
)
from trainer.metrics import classification_metrics
from trainer.portable import model_cost
from trainer.records import (
    Dataset,
    EpochMetrics,
    Fold,
    FoldFn,
    FoldResult,
    ReportFn,
    TrialResult,
)

log = logging.getLogger(__name__)

EVAL_BATCH = 256


def _check_data(cfg: TrialConfig, data: Dataset, folds: Sequence[Fold]) -> None:
    check_images(data.images)
    if not folds:
        raise InvalidConfig("no folds given: pass at least one (train, val) split")
    for i, fold in enumerate(folds):
        if len(fold.train) == 0 or len(fold.val) == 0:
            raise InvalidConfig(f"fold {i} has an empty train or validation split")


def _corrupted_sets(
    data: Dataset, index: np.ndarray, fold: int, cfg: TrialConfig
) -> list[np.ndarray]:
    """The fold's validation images, each under one seeded corruption (as the study's symmetry
    and colour allow), made once per fold."""
    from trainer.corruptions import corrupt_each

    images = data.images[index]
    return [corrupt_each(images, seed=fold, symmetry=cfg.symmetry, colour=cfg.colour)[0]]


def _predict_all(predict, images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Class probabilities for ``images[index]``, in order."""
    batches = image_batches(images, index, EVAL_BATCH)
    return np.concatenate([keras.ops.convert_to_numpy(predict(x)) for x in batches])


def _is_better(value: float, best: float) -> bool:
    return value > best + 1e-9


def train_trial(
    config: TrialConfig,
    data: Dataset,
    folds: Sequence[Fold],
    report: ReportFn,
    *,
    monitor: str = "accuracy",
    on_fold: FoldFn | None = None,
    completed: Sequence[FoldResult] = (),
    hooks: TrainHooks | None = None,
) -> TrialResult:
    """Run every fold not in ``completed``; return per-fold, per-epoch metrics and timings.

    ``report(fold, epoch, metrics)`` follows each validated epoch and ``on_fold(result)`` each
    finished fold; either returning ``Decision.STOP`` ends the trial cleanly, and the result
    says how far it got. Raises a ``TrialFailed`` subclass when the trial cannot go on.
    """
    if monitor not in MONITORS:
        raise InvalidConfig(f"monitor={monitor!r} is not one of {', '.join(MONITORS)}")
    _check_data(config, data, folds)
    check_backend(config.backend)
    started = time.perf_counter()
    done = {r.fold: r for r in completed}
    results: list[FoldResult] = [done[i] for i in sorted(done)]
    if all(i in done for i in range(len(folds))):
        return TrialResult(tuple(results), len(folds), stopped=False, seconds=0.0)
    # Seconds: model build, tracing the input pipeline, training steps (tracing included),
    # precise-BN refresh, validation, and the whole call ("trial"); the rest of "trial" is
    # per-fold set-up and bookkeeping (weight copies, callbacks).
    timings = dict.fromkeys(
        ("build", "pipeline", "train_steps", "bn_refresh", "eval", "trial"), 0.0
    )
    with oom_as_trial_failure(config):
        run = _set_up(config, data, folds, report, monitor, timings, hooks)
        stopped, reason = False, ""
        for index, fold in enumerate(folds):
            if index in done:
                continue
            result, stopped = _run_fold(run, index, fold)
            results.append(result)
            if stopped:
                reason = f"stopped during fold {index} at epoch {result.epochs[-1].epoch}"
                break
            if on_fold is not None and on_fold(result) is Decision.STOP:
                stopped, reason = index < len(folds) - 1, f"stopped after fold {index}"
                if stopped:
                    break
    results.sort(key=lambda r: r.fold)
    timings["trial"] = time.perf_counter() - started
    return TrialResult(
        tuple(results),
        len(folds),
        stopped=stopped,
        stop_reason=reason,
        seconds=time.perf_counter() - started,
        timings=timings,
    )


def _set_up(
    config: TrialConfig,
    data: Dataset,
    folds: Sequence[Fold],
    report: ReportFn,
    monitor: str,
    timings: dict[str, float],
    hooks: TrainHooks | None,
) -> _TrialRun:
    """Set up the ``ModelRun`` (a model this worker kept from an earlier trial of the same
    architecture when there is one) and its prediction function once for every fold (timed into
    ``timings``)."""
    steps = max(1, len(folds[0].train) // config.batch_size)
    model_run = ModelRun(config, data, steps, timings, reuse=True)
    start = time.perf_counter()
    predict = model_run.predict
    timings["build"] += time.perf_counter() - start
    for hook in hooks.after_build if hooks else []:
        start = time.perf_counter()
        hook(lambda cost: model_cost(model_run, cost))
        timings["cost"] = timings.get("cost", 0.0) + time.perf_counter() - start
    return _TrialRun(config, data, model_run, predict, report, monitor, timings, hooks)


@dataclass
class _TrialRun:
    """What every fold of one trial trains and validates with, set up once per trial."""

    cfg: TrialConfig
    data: Dataset
    model: ModelRun
    predict: Callable[[np.ndarray], Any]  # raw images -> class probabilities
    report: ReportFn
    monitor: str
    timings: dict[str, float]  # seconds per part, summed over folds
    hooks: TrainHooks | None


@dataclass
class _Best:
    """The best epoch so far of one fold, its weights and confusion matrix, and the epochs since
    it (for early stopping and the plateau rule)."""

    value: float = -math.inf
    epoch: int = 0
    weights: list[Any] | None = None
    confusion: Any = None
    wait: int = 0
    plateau_wait: int = 0

    def update(self, value: float, epoch: int, model: keras.Model, confusion: Any) -> None:
        if _is_better(value, self.value):
            self.value, self.epoch, self.wait, self.plateau_wait = value, epoch, 0, 0
            self.weights, self.confusion = snapshot(model.weights), confusion
        else:
            self.wait += 1
            self.plateau_wait += 1

    def result(
        self, fold: int, epochs: list[EpochMetrics], stopped: bool, early: bool, seconds: float
    ) -> FoldResult:
        """The fold's record, scored at this best epoch."""
        rows = self.confusion if self.confusion is not None else []
        return FoldResult(
            fold=fold,
            epochs=tuple(epochs),
            best_epoch=self.epoch,
            stopped=stopped,
            early_stopped=early,
            seconds=seconds,
            first_epoch_seconds=epochs[0].seconds if epochs else 0.0,
            confusion=tuple(tuple(int(v) for v in row) for row in rows),
        )


def _validate(
    run: _TrialRun, fold: Fold, corrupted: list[np.ndarray]
) -> tuple[dict[str, float], Any]:
    """The fold's validation metrics (and robust accuracy with ``corrupted`` sets), and the
    confusion matrix."""
    data, predict = run.data, run.predict
    val_labels = data.labels[fold.val]
    probs = _predict_all(predict, data.images, fold.val).astype(np.float64)
    values, confusion = classification_metrics(val_labels, probs, data.n_classes)
    if corrupted:
        every = np.arange(len(fold.val))
        shifted = [
            float(np.mean(_predict_all(predict, c, every).argmax(axis=1) == val_labels))
            for c in corrupted
        ]
        values["corrupted_accuracy"] = float(np.mean(shifted))
        values["robust_accuracy"] = (values["accuracy"] + values["corrupted_accuracy"]) / 2
    return values, confusion


def _train(run: _TrialRun, fold: Fold, index: int, epoch: int, weights: np.ndarray, seed: int):
    """One training epoch of the fold and the BatchNorm refresh after it (both timed)."""
    done = run.model.epoch(fold.train, epoch, weights, seed, where=f"fold {index}, epoch {epoch}")
    start = time.perf_counter()
    run.model.refresh(fold.train, (seed, epoch), at_most=len(fold.val))
    run.timings["bn_refresh"] += time.perf_counter() - start
    return done


def _run_fold(run: _TrialRun, index: int, fold: Fold) -> tuple[FoldResult, bool]:
    """Train and validate one fold epoch by epoch until its epochs, early stopping or a STOP
    decision end it; the model keeps the best epoch's weights."""
    cfg, data, timings = run.cfg, run.data, run.timings
    model = run.model.built.model
    fold_start = time.perf_counter()
    weights = run.model.start(data.labels[fold.train])
    seed = data_seed(cfg, index)
    robust = run.monitor == "robust_accuracy"
    corrupted = _corrupted_sets(data, fold.val, index, cfg) if robust else []
    epochs: list[EpochMetrics] = []
    best = _Best()
    stopped = early = False
    current = "train"
    for epoch in range(cfg.epochs):
        for hook in run.hooks.before_epoch if run.hooks else []:
            hook(index, epoch)
        epoch_start = time.perf_counter()
        done = _train(run, fold, index, epoch, weights, seed)
        name, phase = done.phase, run.model.phases[done.phase]
        if name != current:
            best.wait = best.plateau_wait = 0  # patience restarts when the backbone is unfrozen
        current = name
        t_train = time.perf_counter()
        values, confusion = _validate(run, fold, corrupted)
        timings["eval"] += time.perf_counter() - t_train
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=done.loss,
            learning_rate=done.learning_rate,
            seconds=time.perf_counter() - epoch_start,
            phase=name,
            **values,
        )
        epochs.append(metrics)
        best.update(values[run.monitor], epoch, model, confusion)
        if run.report(index, epoch, metrics) is Decision.STOP:
            stopped = True
            break
        if cfg.patience and best.wait >= cfg.patience and name == "train":
            early = epoch < cfg.epochs - 1
            break
        if cfg.plateau_patience and best.plateau_wait >= cfg.plateau_patience:
            phase.set_lr(phase.lr * cfg.plateau_factor)
            best.plateau_wait = 0
    if best.weights is not None:
        restore(model.weights, best.weights)  # the best epoch (early-stopping semantics)
    seconds = time.perf_counter() - fold_start
    return best.result(index, epochs, stopped, early, seconds), stopped
