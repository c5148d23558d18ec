"""A deterministic stand-in for ``trainer.train_trial``: shipped for tests and storage benchmarks.

Scores follow a smooth function of the configuration (best near learning rate 2e-3 with light
augmentation) plus per-fold noise, so samplers and pruners have something real to find, and a
trial costs milliseconds. ``FAKE_EPOCH_SECONDS`` in the environment makes each epoch sleep, to
give a process time to be killed mid-fold in tests. ``FAKE_TRAINED_LOG`` names a file that gets
one line per fold the fake actually trains (``learning_rate fold``, appended by every worker), so
a test can see a fold re-used rather than trained again: the fake is deterministic, and a
retrained fold's record equals the re-used one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainer.config import Decision, TrialConfig
from trainer.errors import NonFiniteLoss, OutOfMemory
from trainer.hooks import TrainHooks
from trainer.records import Dataset, EpochMetrics, Fold, FoldFn, FoldResult, ReportFn, TrialResult

AUGMENT_BONUS = {"none": -0.04, "light": 0.02, "moderate": 0.0, "heavy": -0.02, "robust": -0.03}


def trained_folds(log: str | os.PathLike[str], learning_rate: float) -> list[int]:
    """The folds the fake trained for the configuration of ``learning_rate``, in the order
    ``FAKE_TRAINED_LOG`` at ``log`` recorded them (one entry per time a fold was trained)."""
    lines = (line.split() for line in Path(log).read_text().splitlines())
    return [int(fold) for rate, fold in lines if rate == repr(learning_rate)]


def fake_cost(config: TrialConfig, cost: str) -> float:
    """A deterministic stand-in for a model's cost that makes a Pareto front with
    ``fake_quality``: latency grows with the learning rate (accuracy peaks at 2e-3), parameters
    with the head and the image size."""
    if cost == "latency":
        return 0.5 + 1000.0 * config.learning_rate
    return float(1000 * config.head_width + 10 * config.image_size**2)


def fake_quality(config: TrialConfig) -> float:
    """The score this configuration converges to (0..1)."""
    lr_term = -0.08 * (math.log10(config.learning_rate) - math.log10(2e-3)) ** 2
    return float(np.clip(0.85 + lr_term + AUGMENT_BONUS[config.augment], 0.05, 0.99))


def fake_train_trial(
    config: TrialConfig,
    data: Dataset,
    folds: Sequence[Fold],
    report: ReportFn,
    *,
    monitor: str = "accuracy",
    on_fold: FoldFn | None = None,
    completed: Sequence[FoldResult] = (),
    hooks: TrainHooks | None = None,
    **_: object,
) -> TrialResult:
    # Fault drills keyed by the learning rate's exact value, so a test can pick its victim.
    if config.learning_rate == 0.00666:
        raise OutOfMemory("simulated out of memory (fake trainer drill)")
    if config.learning_rate == 0.00777:
        raise NonFiniteLoss("training loss became nan (fake trainer drill)")
    sleep = float(os.environ.get("FAKE_EPOCH_SECONDS", "0"))
    trained_log = os.environ.get("FAKE_TRAINED_LOG")
    quality = fake_quality(config)
    for measured in hooks.after_build if hooks else []:
        measured(lambda cost: fake_cost(config, cost))
    done = {r.fold: r for r in completed}
    results = [done[i] for i in sorted(done)]
    for index in range(len(folds)):
        if index in done:
            continue
        if trained_log:
            with Path(trained_log).open("a") as fh:  # one short line: an atomic append
                fh.write(f"{config.learning_rate!r} {index}\n")
        rng = np.random.default_rng(config.seed * 7919 + index * 31 + int(quality * 1e6))
        epochs = []
        for epoch in range(config.epochs):
            for hook in hooks.before_epoch if hooks else []:
                hook(index, epoch)
            if sleep:
                time.sleep(sleep)
            progress = 1.0 - math.exp(-(epoch + 1) / 2.0)
            acc = float(np.clip(quality * progress + rng.normal(0, 0.005), 0, 1))
            m = EpochMetrics(
                epoch=epoch,
                accuracy=acc,
                balanced_accuracy=acc * 0.98,  # each metric its own value, so that a test
                macro_precision=acc * 0.97,  # can tell which one a trial was scored by
                macro_recall=acc * 0.96,
                macro_f1=acc * 0.95,
                loss=1.0 - acc,
                train_loss=1.0 - acc,
                learning_rate=config.learning_rate,
                seconds=sleep,
                corrupted_accuracy=acc * 0.8,
                robust_accuracy=acc * 0.9,
            )
            epochs.append(m)
            if report(index, epoch, m) is Decision.STOP:
                best = max(epochs, key=lambda e: getattr(e, monitor))
                results.append(FoldResult(index, tuple(epochs), best.epoch, True, False, 0, 0))
                return TrialResult(tuple(results), len(folds), True, f"stopped in fold {index}")
        best = max(epochs, key=lambda e: getattr(e, monitor))
        confusion = _confusion(data.labels[folds[index].val], data.n_classes, best.accuracy)
        result = FoldResult(index, tuple(epochs), best.epoch, False, False, 0, 0, confusion)
        results.append(result)
        if on_fold is not None and on_fold(result) is Decision.STOP and index < len(folds) - 1:
            return TrialResult(tuple(results), len(folds), True, f"stopped after fold {index}")
    return TrialResult(tuple(results), len(folds), False)


def _confusion(labels: np.ndarray, n_classes: int, accuracy: float) -> tuple[tuple[int, ...], ...]:
    """A plausible confusion matrix: each class right at ``accuracy``, wrong as the next one."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    for c, n in enumerate(counts):
        right = int(round(accuracy * n))
        m[c, c], m[c, (c + 1) % n_classes] = right, n - right
    return tuple(tuple(int(v) for v in row) for row in m)
