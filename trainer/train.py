"""Train and score one configuration by k-fold cross-validation, reporting after every epoch.

One model and one pair of compiled step functions serve all folds of a trial: each fold starts
from the same initial weights and freshly reset optimizers, so fold 2 does not trace the graph
again. Stopping is a returned ``Decision`` from the caller's callbacks, never an exception.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from trainer.backbones import BuiltModel, build_model, head_variables
from trainer.batches import TrainBatches, cast_and_resize, image_batches, image_spec
from trainer.config import MONITORS, Decision, TrialConfig
from trainer.errors import InvalidConfig, NonFiniteLoss, OutOfMemory
from trainer.hooks import TrainHooks
from trainer.metrics import class_weights, classification_metrics
from trainer.optimizers import make_optimizer, reset_optimizer
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
    images = data.images
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InvalidConfig(
            f"images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}"
        )
    if not folds:
        raise InvalidConfig("no folds given: pass at least one (train, val) split")
    for i, fold in enumerate(folds):
        if len(fold.train) == 0 or len(fold.val) == 0:
            raise InvalidConfig(f"fold {i} has an empty train or validation split")


class _BatchNormRefresh:
    """Re-estimate BatchNorm statistics on training batches right before each validation.

    Moving averages lag the weights: with tens of steps per epoch they still describe an
    earlier network, and a from-scratch model that fits its batches predicts one class in
    inference mode. Averaging the exact batch statistics of a few clean training batches under
    the current weights ("precise BN") makes epoch-1 validation scores mean something.
    """

    def __init__(
        self, built: BuiltModel, cfg: TrialConfig, steps_per_epoch: int, images: np.ndarray
    ) -> None:
        self.layers = [
            layer
            for layer in built.model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
        # 16 batches, but never more than a quarter of an epoch's (at least 4): on small folds
        # 16 forward batches cost almost half an epoch of training (bench/overhead.py).
        self.max_batches = min(16, max(4, math.ceil(steps_per_epoch / 4)))
        self.batch = cfg.batch_size
        self.images = images
        model, size = built.model, cfg.image_size
        self.forward = tf.function(
            lambda raw: model(cast_and_resize(raw, size), training=True),
            input_signature=(image_spec(images),),
        )
        self.traced = False

    def _trace(self) -> None:
        """Trace the forward pass with momentum 0 (on first use, like the other step functions)."""
        saved = [layer.momentum for layer in self.layers]
        for layer in self.layers:
            layer.momentum = 0.0  # traced once: each call stores exactly this batch's statistics
        try:
            self.forward.get_concrete_function()
        finally:
            for layer, momentum in zip(self.layers, saved, strict=True):
                layer.momentum = momentum
        self.traced = True

    def __call__(self, index: np.ndarray, seed: tuple[int, int]) -> None:
        """Re-estimate from clean batches of ``images[index]``, shuffled by ``seed``."""
        if not self.layers:
            return
        if not self.traced:
            self._trace()
        means: list[list[np.ndarray]] = [[] for _ in self.layers]
        variances: list[list[np.ndarray]] = [[] for _ in self.layers]
        batches = image_batches(
            self.images, index, self.batch, shuffle_seed=seed, limit=self.max_batches
        )
        for x in batches:
            self.forward(x)
            for i, layer in enumerate(self.layers):
                means[i].append(keras.ops.convert_to_numpy(layer.moving_mean))
                variances[i].append(keras.ops.convert_to_numpy(layer.moving_variance))
        for i, layer in enumerate(self.layers):
            if not means[i]:
                continue
            m = np.stack(means[i])
            v = np.stack(variances[i])
            layer.moving_mean.assign(m.mean(axis=0))
            layer.moving_variance.assign(v.mean(axis=0) + m.var(axis=0))  # total variance


class _Phase:
    """One optimizer over one variable list, with its compiled training step."""

    def __init__(self, name: str, built: BuiltModel, cfg: TrialConfig, variables, lr: float):
        self.name = name
        self.base_lr = lr
        self.variables = list(variables)
        optimizer = make_optimizer(cfg.optimizer, lr, cfg.weight_decay)
        if cfg.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.optimizer.build(self.variables)
        model = built.model
        smoothing = cfg.label_smoothing
        size = cfg.image_size
        n_classes = built.model.output_shape[-1]
        spec = (
            tf.TensorSpec((None, size, size, 3), tf.float32),
            tf.TensorSpec((None, n_classes), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        )
        scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def step(images, onehot, sample_w):
            with tf.GradientTape() as tape:
                probs = model(images, training=True)
                per_example = keras.losses.categorical_crossentropy(
                    onehot, probs, label_smoothing=smoothing
                )
                loss = tf.reduce_mean(per_example * sample_w)
                if model.losses:
                    loss = loss + tf.add_n([tf.cast(x, tf.float32) for x in model.losses])
                scaled = optimizer.scale_loss(loss) if scale else loss
            grads = tape.gradient(scaled, self.variables)
            optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return loss

        self._python_step = step
        self._spec = spec
        self.jit = cfg.jit_compile
        self._compiled = tf.function(step, input_signature=spec, jit_compile=self.jit)
        self._checked = not self.jit

    def step(self, images: tf.Tensor, onehot: tf.Tensor, sample_w: tf.Tensor) -> tf.Tensor:
        """One training step; an XLA step that fails to compile falls back to plain graph mode."""
        if self._checked:
            return self._compiled(images, onehot, sample_w)
        try:
            loss = self._compiled(images, onehot, sample_w)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as exc:
            log.warning(
                "XLA could not compile the %s step (%s); continuing without XLA",
                self.name,
                str(exc).splitlines()[0][:200],
            )
            self.jit = False
            self._compiled = tf.function(self._python_step, input_signature=self._spec)
            loss = self._compiled(images, onehot, sample_w)
        self._checked = True
        return loss

    def reset(self) -> None:
        reset_optimizer(self.optimizer)
        self.set_lr(self.base_lr)

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate = lr

    @property
    def lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))


def snapshot(variables: Sequence[keras.Variable]) -> list[tf.Tensor]:
    """The variables' current values as tensors (copy-on-write: later updates do not change
    them). A fifth of ``get_weights``'s cost, which converts each one to NumPy."""
    return [tf.identity(v.value) for v in variables]


def restore(variables: Sequence[keras.Variable], values: Sequence[tf.Tensor]) -> None:
    """Assign a ``snapshot`` back (a third of ``set_weights``'s cost)."""
    for variable, value in zip(variables, values, strict=True):
        variable.value.assign(value)


def _corrupted_sets(data: Dataset, index: np.ndarray, fold: int) -> list[np.ndarray]:
    """The fold's validation images, each under one seeded corruption, made once per fold."""
    from trainer.corruptions import corrupt_each

    return [corrupt_each(data.images[index], seed=fold)[0]]


def _predict_all(predict, images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Class probabilities for ``images[index]``, in order."""
    return np.concatenate([predict(x).numpy() for x in image_batches(images, index, EVAL_BATCH)])


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
    started = time.perf_counter()
    done = {r.fold: r for r in completed}
    results: list[FoldResult] = [done[i] for i in sorted(done)]
    if all(i in done for i in range(len(folds))):
        return TrialResult(tuple(results), len(folds), stopped=False, seconds=0.0)
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    # Seconds: model build, tracing the input pipeline, training steps (tracing included),
    # precise-BN refresh, validation, and the whole call ("trial"); the rest of "trial" is
    # per-fold set-up and bookkeeping (weight copies, callbacks).
    timings = dict.fromkeys(
        ("build", "pipeline", "train_steps", "bn_refresh", "eval", "trial"), 0.0
    )
    try:
        t0 = time.perf_counter()
        steps = max(1, len(folds[0].train) // config.batch_size)
        built = build_model(config, data.n_classes, steps_per_epoch=steps)
        initial = snapshot(built.model.weights)
        phases = _make_phases(built, config)
        refresh = _BatchNormRefresh(built, config, steps, data.images)
        size = config.image_size
        infer = tf.function(  # XLA (when asked) on the model only: it cannot compile resizing
            lambda x: built.model(x, training=False), jit_compile=config.jit_compile
        )
        predict = tf.function(
            lambda raw: infer(cast_and_resize(raw, size)),
            input_signature=(image_spec(data.images),),
        )
        t1 = time.perf_counter()
        timings["build"] = t1 - t0
        batches = TrainBatches(config, data.images, data.labels, data.n_classes)
        timings["pipeline"] = time.perf_counter() - t1
        stopped, reason = False, ""
        for index, fold in enumerate(folds):
            if index in done:
                continue
            result, stopped = _run_fold(
                index,
                fold,
                config,
                data,
                built,
                initial,
                phases,
                batches,
                predict,
                refresh,
                report,
                monitor,
                timings,
                hooks,
            )
            results.append(result)
            if stopped:
                reason = f"stopped during fold {index} at epoch {result.epochs[-1].epoch}"
                break
            if on_fold is not None and on_fold(result) is Decision.STOP:
                stopped, reason = index < len(folds) - 1, f"stopped after fold {index}"
                if stopped:
                    break
    except tf.errors.ResourceExhaustedError as exc:
        raise OutOfMemory(
            f"out of memory training {config.backbone} at batch {config.batch_size}, "
            f"size {config.image_size}: {str(exc).splitlines()[0][:300]}"
        ) from exc
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


def _make_phases(built: BuiltModel, cfg: TrialConfig) -> dict[str, _Phase]:
    """'train' always; 'warmup' (head only, full lr) when a pretrained backbone is unfrozen."""
    if not cfg.pretrained:
        return {
            "train": _Phase("train", built, cfg, built.model.trainable_variables, cfg.learning_rate)
        }
    head = head_variables(built)
    if cfg.unfreeze_depth == 0:
        return {"train": _Phase("train", built, cfg, head, cfg.learning_rate)}
    phases = {
        "train": _Phase(
            "train",
            built,
            cfg,
            built.model.trainable_variables,
            cfg.learning_rate * cfg.finetune_lr_scale,
        )
    }
    if cfg.warmup_epochs > 0:
        phases["warmup"] = _Phase("warmup", built, cfg, head, cfg.learning_rate)
    return phases


def _run_fold(
    index: int,
    fold: Fold,
    cfg: TrialConfig,
    data: Dataset,
    built: BuiltModel,
    initial: list[tf.Tensor],
    phases: dict[str, _Phase],
    batches: TrainBatches,
    predict,
    refresh: _BatchNormRefresh,
    report: ReportFn,
    monitor: str,
    timings: dict[str, float],
    hooks: TrainHooks | None,
) -> tuple[FoldResult, bool]:
    fold_start = time.perf_counter()
    restore(built.model.weights, initial)
    for phase in phases.values():
        phase.reset()
    weights = (
        class_weights(data.labels[fold.train], data.n_classes)
        if cfg.class_weighting
        else np.ones(data.n_classes, np.float32)
    )
    seed = cfg.seed * 1009 + index
    corrupted = _corrupted_sets(data, fold.val, index) if monitor == "robust_accuracy" else []
    every = np.arange(len(fold.val))
    val_labels = data.labels[fold.val]
    epochs: list[EpochMetrics] = []
    best_value, best_epoch, best_weights, best_confusion = -math.inf, 0, None, None
    wait = plateau_wait = 0
    stopped = early = False
    first_epoch_seconds = 0.0
    current = "train"
    for epoch in range(cfg.epochs):
        for hook in hooks.before_epoch if hooks else []:
            hook(index, epoch)
        name = "warmup" if "warmup" in phases and epoch < cfg.warmup_epochs else "train"
        if name != current:
            wait = plateau_wait = 0  # patience restarts when the backbone is unfrozen
        current = name
        phase = phases[name]
        epoch_start = time.perf_counter()
        losses = []
        for images, onehot, sample_w in batches.epoch(fold.train, weights, seed=seed, epoch=epoch):
            losses.append(phase.step(images, onehot, sample_w))
        train_loss = float(np.mean([float(x) for x in losses])) if losses else float("nan")
        t_steps = time.perf_counter()
        timings["train_steps"] += t_steps - epoch_start
        refresh(fold.train, (seed, epoch))
        t_train = time.perf_counter()
        timings["bn_refresh"] += t_train - t_steps
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(
                f"training loss became {train_loss} in fold {index}, epoch {epoch} "
                f"({cfg.optimizer}, learning rate {phase.lr:.3g}); the trial diverged"
            )
        probs = _predict_all(predict, data.images, fold.val).astype(np.float64)
        values, confusion = classification_metrics(val_labels, probs, data.n_classes)
        if corrupted:
            shifted = [
                float(np.mean(_predict_all(predict, c, every).argmax(axis=1) == val_labels))
                for c in corrupted
            ]
            values["corrupted_accuracy"] = float(np.mean(shifted))
            values["robust_accuracy"] = (values["accuracy"] + values["corrupted_accuracy"]) / 2
        seconds = time.perf_counter() - epoch_start
        timings["eval"] += time.perf_counter() - t_train
        if epoch == 0:
            first_epoch_seconds = seconds
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=train_loss,
            learning_rate=phase.lr,
            seconds=seconds,
            phase=name,
            **values,
        )
        epochs.append(metrics)
        if _is_better(values[monitor], best_value):
            best_value, best_epoch, wait, plateau_wait = values[monitor], epoch, 0, 0
            best_weights, best_confusion = snapshot(built.model.weights), confusion
        else:
            wait += 1
            plateau_wait += 1
        if report(index, epoch, metrics) is Decision.STOP:
            stopped = True
            break
        if cfg.patience and wait >= cfg.patience and name == "train":
            early = epoch < cfg.epochs - 1
            break
        if cfg.plateau_patience and plateau_wait >= cfg.plateau_patience:
            phase.set_lr(phase.lr * cfg.plateau_factor)
            plateau_wait = 0
    if best_weights is not None:
        restore(built.model.weights, best_weights)  # the best epoch (early-stopping semantics)
    confusion_rows = tuple(
        tuple(int(v) for v in row) for row in (best_confusion if best_confusion is not None else [])
    )
    return (
        FoldResult(
            fold=index,
            epochs=tuple(epochs),
            best_epoch=best_epoch,
            stopped=stopped,
            early_stopped=early,
            seconds=time.perf_counter() - fold_start,
            first_epoch_seconds=first_epoch_seconds,
            confusion=confusion_rows,
        ),
        stopped,
    )
