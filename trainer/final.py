"""Train a chosen configuration for keeps: on all the data, or once per cross-validation fold.

This is ``trainer/train.py``'s training without validation: the same ``trainer.loop.ModelRun``
(model, optimizer phases, batches, augmentation, class weights) and its ``epoch``. With no validation there is no early stopping and no
ReduceLROnPlateau; instead the caller passes how many epochs to run and, optionally, the
learning rate of every epoch (``replay_schedule`` takes it from the trial's folds, which
recorded the rate each epoch used), or a ``Deadline`` that re-plans the epochs of a cosine
decay from the run's own epoch times.
After the last epoch the BatchNorm statistics are re-estimated on clean (unaugmented) training
batches by ``trainer.loop.BatchNormRefresh``, as before each validation (here from all its
``max_batches``, not the validation's share), so the saved model's inference mode matches what
the folds were scored with.

Never imports Optuna; the export CLI (``search/export.py``) reads the study and calls this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from trainer import backend
from trainer.backbones import BuiltModel
from trainer.config import TrialConfig
from trainer.errors import InvalidConfig
from trainer.loop import ALL_DATA, ModelRun, check_images, data_seed, oom_as_trial_failure
from trainer.records import Dataset, Fold, FoldResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitEpoch:
    """One training epoch without validation: its mean training loss and learning rate."""

    epoch: int
    phase: str  # "warmup" (head only) or "train"
    train_loss: float
    learning_rate: float
    seconds: float
    augment: str = ""  # the level this epoch's batches were augmented with
    size: int = 0  # the px this epoch's batches had
    planned: int = 0  # the run's epochs as planned when this one began (a deadline re-plans)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FitResult:
    """A trained model (inference-ready, BatchNorm refreshed) and how it was trained."""

    name: str  # "all" or "fold_<k>"
    model: keras.Model
    epochs: tuple[FitEpoch, ...]
    n_images: int
    seconds: float

    def history(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_images": self.n_images,
            "seconds": round(self.seconds, 3),
            "epochs": [e.as_dict() for e in self.epochs],
        }


# progress(run name, finished epoch, epochs in this run), after every epoch.
ProgressFn = Callable[[str, FitEpoch, int], None]


def final_epochs(folds: Sequence[FoldResult]) -> int:
    """Epochs for a retrain on all data: round(median(best_epoch + 1)) over the finished folds.

    ``best_epoch`` is 0-based and early stopping restored it, so ``best_epoch + 1`` is how long
    each fold model effectively trained. Python's ``round`` sends halves to the even number
    (median 2.5 -> 2). At least 1.
    """
    done = [f.best_epoch + 1 for f in folds if not f.stopped]
    if not done:
        raise InvalidConfig("no finished folds to take the number of epochs from")
    return max(1, round(statistics.median(done)))


def replay_schedule(folds: Sequence[FoldResult], epochs: int) -> list[float]:
    """Learning rate per epoch: the median over folds of the rate each fold used at that epoch.

    Folds that stopped before an epoch do not vote for it; past every fold's last epoch the last
    known rate is kept.
    """
    rates: list[float] = []
    for epoch in range(epochs):
        used = [e.learning_rate for f in folds for e in f.epochs if e.epoch == epoch]
        if used:
            rates.append(float(statistics.median(used)))
        elif rates:
            rates.append(rates[-1])
        else:
            raise InvalidConfig("the folds recorded no epochs to take learning rates from")
    return rates


def cosine_schedule(config: TrialConfig, epochs: int, *, floor: float = 0.01) -> list[float]:
    """Learning rate per epoch for a final model: a cosine decay to ``floor`` x the start.

    With a pretrained, unfrozen backbone the head-only warm-up epochs keep the configured rate
    and the decay starts from the fine-tuning rate (``finetune_lr_scale`` x it), as the trial's
    phases do.
    """
    if epochs < 1:
        raise InvalidConfig(f"epochs must be >= 1, got {epochs}")
    finetune = config.pretrained and config.unfreeze_depth > 0
    warmup = min(config.warmup_epochs, epochs - 1) if finetune else 0
    start = config.learning_rate * (config.finetune_lr_scale if finetune else 1.0)
    decay = epochs - warmup
    rates = [config.learning_rate] * warmup
    for k in range(decay):
        progress = k / max(1, decay - 1)
        rates.append(start * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))))
    return rates


@dataclass(frozen=True)
class Tail:
    """The last ``share`` of a run's epochs (at least one) trained under ``level`` instead.

    A model trained under strong augmentation (``robust``: exposure, colour, defocus, noise,
    JPEG, turns as the data allows) ends closer to clean images when its last epochs, at the
    smallest learning rates of the cosine decay, see only ``light`` augmentation (the data's
    turns and mirrors, zoom); docs/constants.md says where that was measured."""

    level: str
    share: float

    def epochs(self, total: int) -> int:
        return min(total, max(1, round(self.share * total)))


@dataclass(frozen=True)
class Progressive:
    """The first ``share`` of a run's epochs trained at ``size`` px, the rest at the model's own.

    Progressive resizing, as EfficientNetV2 trains: a convolutional network's weights do not
    depend on the image size, and an epoch at 64 px costs about (64 / 96)^2 = 0.44 of one at
    96 px, so the same wall time holds more epochs. The later epochs, the smallest learning
    rates of the cosine decay and any ``Tail`` among them, are at full size; once a run has
    switched to full size it stays there. ``size`` is the search's own resolution, at which the
    configuration was scored."""

    size: int
    share: float

    def epochs(self, total: int) -> int:
        """Epochs at ``size`` in a run of ``total``: never all of them."""
        return max(0, min(total - 1, round(self.share * total)))

    def cost(self, full: int) -> float:
        """An epoch at ``size`` relative to one at ``full`` px."""
        return relative_cost(self.size, full)


def relative_cost(size: int, full: int) -> float:
    """An epoch at ``size`` px against one at ``full`` px: their pixels' ratio."""
    return (size / full) ** 2


def replanned(schedule: Sequence[float], done: int, last: float) -> list[float]:
    """A new schedule for the rest of a run that has trained ``done`` epochs, the last at rate
    ``last``: the epochs before keep their place, and the rest follow ``schedule``'s shape scaled
    to continue below ``last``, so the decay never steps up when a re-plan lengthens the run."""
    rates = list(schedule)
    anchor = rates[done - 1] if done >= 1 else 0.0
    if done < 1 or anchor <= 0:
        return rates
    scale = min(1.0, last / anchor)
    return rates[:done] + [r * scale for r in rates[done:]]


@dataclass
class Deadline:
    """Epochs of a cosine-scheduled run re-planned from its own epoch times to end by a time.

    ``at`` is a ``clock()`` reading. After every epoch the run's total is set to the epochs done
    plus those that fit before ``at`` at the median epoch time so far (the first epoch, which
    traces the graph, left out once there are others), with ``keep_back`` epochs (half an epoch
    by default) kept back for the BatchNorm refresh and what follows the training; within ``[1, max_epochs]``. The total shrinks whenever time runs short and grows
    whenever ``GROW_BY`` or more epochs fit beyond it, or ``max_epochs`` does (the margin keeps one
    epoch's jitter from lengthening and then shortening the run), so the time that cautious
    early prices held back is trained rather than left unused; the rest of the cosine decay is
    re-drawn over the new total and scaled to continue from the rate the run has reached
    (``replanned``), so the rate never steps up.

    Epochs of unequal cost (``Progressive``) pass ``relative``, each done epoch's cost against a
    full-size one, and ``cost(epoch, total)`` for the epochs to come: times are normalised by
    their cost, the first epoch at each cost (it traces) is left out while others exist, and
    the latest cost's epochs give the rate once one of them is left (small epochs cost more
    than their pixels say, so the full-size price is usually lower than guessed, and the run
    grows when it is known).
    """

    GROW_BY = 2  # epochs: the run lengthens only when at least this many more fit

    at: float
    max_epochs: int
    clock: Callable[[], float] = time.monotonic
    keep_back: float = 0.5  # epochs' worth of time left after the last one (refresh, calibration)

    def total(
        self,
        done: int,
        planned: int,
        seconds: Sequence[float],
        relative: Sequence[float] | None = None,
        cost: Callable[[int, int], float] | None = None,
    ) -> int:
        rel = list(relative) if relative is not None else [1.0] * len(seconds)
        firsts = {rel.index(r) for r in set(rel)}
        timed = list(zip(seconds, rel, strict=True))
        pool = [(r, s / r) for i, (s, r) in enumerate(timed) if i not in firsts]
        pool = pool or [(r, s / r) for s, r in timed]
        latest = [u for r, u in pool if r == rel[-1]]
        if not latest and len(firsts) > 1:
            return planned  # the first epoch at a new size traced: wait for one that did not
        per_unit = statistics.median(latest or [u for _, u in pool])
        if per_unit <= 0:
            return planned
        left = self.at - self.clock() - self.keep_back * per_unit
        fits = done
        for total in range(done + 1, self.max_epochs + 1):
            future = sum(cost(e, total) for e in range(done, total)) if cost else total - done
            if future * per_unit > left:
                break
            fits = total
        fits = max(done, min(self.max_epochs, fits), 1)
        if planned < fits < min(planned + self.GROW_BY, self.max_epochs):
            return planned
        return fits


class _Trainer:
    """A ``ModelRun`` (a fresh model, never a kept one) trained by ``fit`` for a number of
    epochs that a schedule or a deadline sets."""

    def __init__(self, config: TrialConfig, data: Dataset, steps_per_epoch: int) -> None:
        backend.check(config.backend)
        self.config = config
        self.data = data
        self.run = ModelRun(config, data, steps_per_epoch)
        self.built: BuiltModel = self.run.built

    def fit(
        self,
        name: str,
        index: np.ndarray,
        epochs: int,
        schedule: Sequence[float] | None,
        seed: int,
        progress: ProgressFn | None,
        deadline: Deadline | None = None,
        tail: Tail | None = None,
        progressive: Progressive | None = None,
    ) -> tuple[FitEpoch, ...]:
        cfg, data = self.config, self.data
        level, size, full = cfg.augment, cfg.image_size, cfg.image_size
        if progressive is not None and progressive.size != full:
            size = progressive.size
        if deadline is not None:
            schedule = cosine_schedule(cfg, epochs)
        if schedule is not None and len(schedule) < epochs:
            raise InvalidConfig(f"{len(schedule)} learning rates given for {epochs} epochs")
        weights = self.run.start(data.labels[index])
        history: list[FitEpoch] = []
        epoch, planned = 0, epochs
        while epoch < epochs:
            lr = float(schedule[epoch]) if schedule is not None else None
            if tail is not None and level != tail.level and epoch >= epochs - tail.epochs(epochs):
                level = tail.level  # and so to the end
            if progressive is not None and size != full and epoch >= progressive.epochs(epochs):
                size = full  # and so to the end
            where = f"{name}, epoch {epoch}"
            done = self.run.epoch(
                index, epoch, weights, seed, where=where, lr=lr, level=level, size=size
            )
            record = FitEpoch(
                epoch, done.phase, done.loss, done.learning_rate, done.seconds, level, size, epochs
            )
            history.append(record)
            epoch += 1
            if deadline is not None:
                total = self._replan(deadline, history, epochs, progressive, size == full)
                if total != epochs:
                    log.debug("%s: %d epochs instead of %d by the deadline", name, total, epochs)
                    epochs = total
                    schedule = replanned(cosine_schedule(cfg, epochs), epoch, done.learning_rate)
            if progress is not None:
                progress(name, record, epochs)
        if deadline is not None and epochs != planned:
            log.info(
                "%s: planned %d epochs, trained %d: the deadline re-planned them from the run's "
                "own epoch times",
                name,
                planned,
                epochs,
            )
        self.run.refresh(index, (seed, epochs))
        return tuple(history)

    def _replan(
        self,
        deadline: Deadline,
        history: Sequence[FitEpoch],
        epochs: int,
        progressive: Progressive | None,
        at_full: bool,
    ) -> int:
        """The run's epoch total after the epochs in ``history``, by the deadline."""
        full = self.config.image_size
        return deadline.total(
            len(history),
            epochs,
            [h.seconds for h in history],
            [relative_cost(h.size, full) for h in history],
            self._cost(progressive, at_full),
        )

    def _cost(
        self, progressive: Progressive | None, at_full: bool
    ) -> Callable[[int, int], float] | None:
        """Relative cost of epoch e of a run of t epochs, for ``Deadline``."""
        if progressive is None or at_full:
            return None
        low, cheap = progressive.epochs, progressive.cost(self.config.image_size)
        return lambda e, t: cheap if e < low(t) else 1.0


def _check(config: TrialConfig, data: Dataset, epochs: Sequence[int]) -> None:
    check_images(data.images)
    if any(e < 1 for e in epochs):
        raise InvalidConfig(f"epochs must be >= 1, got {list(epochs)}")


def fit_all(
    config: TrialConfig,
    data: Dataset,
    epochs: int,
    *,
    lr_schedule: Sequence[float] | None = None,
    progress: ProgressFn | None = None,
    deadline: Deadline | None = None,
    tail: Tail | None = None,
    progressive: Progressive | None = None,
    index: np.ndarray | None = None,
) -> FitResult:
    """Train ``config`` on every image of ``data`` (or those at ``index``) for ``epochs``
    epochs; return the model.

    ``lr_schedule`` (one rate per epoch) overrides the configured rate; without it the rate is
    constant (the configuration's, a tenth of it after warm-up when fine-tuning). With a
    ``deadline`` the rates are a cosine decay (``cosine_schedule``) over an epoch count that
    ``Deadline`` re-plans after every epoch, starting from ``epochs``. With a ``tail`` the last
    epochs of that count are augmented at ``tail.level``; with ``progressive`` the first ones are
    trained at ``progressive.size`` px.
    """
    if deadline is not None and lr_schedule is not None:
        raise InvalidConfig("a deadline draws its own cosine schedule; pass no lr_schedule")
    _check(config, data, [epochs])
    start = time.perf_counter()
    index = np.arange(len(data)) if index is None else np.asarray(index)
    with oom_as_trial_failure(config):
        trainer = _Trainer(config, data, max(1, len(index) // config.batch_size))
        seed = data_seed(config, ALL_DATA)
        history = trainer.fit(
            "all", index, epochs, lr_schedule, seed, progress, deadline, tail, progressive
        )
    return FitResult("all", trainer.built.model, history, len(index), time.perf_counter() - start)


def fit_folds(
    config: TrialConfig,
    data: Dataset,
    folds: Sequence[Fold],
    epochs: Sequence[int],
    *,
    lr_schedules: Sequence[Sequence[float] | None] | None = None,
    progress: ProgressFn | None = None,
) -> list[FitResult]:
    """Train one model per fold on that fold's training split, ``epochs[k]`` epochs each.

    The folds' data order is seeded as in ``train_trial`` (``seed * 1009 + k``) and every fold
    starts from the same initial weights, so these are re-creations of the trial's fold models
    (cross-validation kept no weights). Each returned model is an independent copy.
    """
    if len(epochs) != len(folds):
        raise InvalidConfig(f"{len(epochs)} epoch counts given for {len(folds)} folds")
    schedules = list(lr_schedules) if lr_schedules is not None else [None] * len(folds)
    if len(schedules) != len(folds):
        raise InvalidConfig(f"{len(schedules)} learning-rate schedules for {len(folds)} folds")
    _check(config, data, epochs)
    results: list[FitResult] = []
    with oom_as_trial_failure(config):
        trainer = _Trainer(config, data, max(1, len(folds[0].train) // config.batch_size))
        for k, fold in enumerate(folds):
            start = time.perf_counter()
            name = f"fold_{k}"
            seed = data_seed(config, k)
            history = trainer.fit(name, fold.train, epochs[k], schedules[k], seed, progress)
            copy = keras.models.clone_model(trainer.built.model)
            copy.set_weights(trainer.built.model.get_weights())
            results.append(
                FitResult(name, copy, history, len(fold.train), time.perf_counter() - start)
            )
    return results


def ensemble_model(models: Sequence[keras.Model], *, name: str = "fold_ensemble") -> keras.Model:
    """One Keras model whose output is the mean of ``models``' softmax outputs (same input)."""
    if not models:
        raise InvalidConfig("an ensemble needs at least one model")
    shape = tuple(models[0].input_shape[1:])
    inputs = keras.Input(shape, name="image")
    outputs = []
    for k, model in enumerate(models):
        # Wrap each member under a unique name: the members' own names all collide.
        member = keras.Model(model.input, model.output, name=f"member_{k}")
        outputs.append(member(inputs))
    if len(outputs) == 1:
        mean = outputs[0]
    else:
        mean = keras.layers.Average(dtype="float32", name="mean_softmax")(outputs)
    return keras.Model(inputs, mean, name=name)


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Save ``model`` in the ``.keras`` format atomically (temporary file, then os.replace).

    Only uncompiled models come out of this module, so no optimizer state (Ranger's included)
    is stored and ``keras.models.load_model`` needs no custom objects.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".keras")
    os.close(fd)
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as any file the user writes, not mkstemp's 0600
    try:
        model.save(tmp, overwrite=True)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
