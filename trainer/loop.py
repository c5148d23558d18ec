"""The training loop ``train_trial`` and ``trainer.final`` share: ``ModelRun`` is one built model
with its phases, BatchNorm refresher and training batches, set up once, and ``ModelRun.epoch``
trains one epoch (phase, learning rate, batches, steps, the finite-loss check); around it, the
class weights (``sample_weights``) and the image check (``check_images``). A trial's folds
validate after each epoch and stop early; the final model follows a deadline or a schedule: those
outer loops are each caller's.

A ``Phase`` is one optimizer over one variable list with its compiled step (head-only warm-up,
then fine-tuning; ``make_phases`` builds them for a configuration); ``BatchNormRefresh``
re-estimates BatchNorm statistics on clean batches; ``snapshot``/``restore`` copy weights;
``data_seed`` is the one formula for a run's data order; ``oom_as_trial_failure`` turns the
backend's out-of-memory error into the typed ``OutOfMemory``. The compiled functions themselves,
one per backend, are ``trainer.steps``'s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from trainer import backend, steps
from trainer.backbones import (
    BuiltModel,
    RateDropout,
    at_size,
    bn_momentum,
    build_model,
    head_kernels,
    head_variables,
)
from trainer.batches import TrainBatches, image_batches
from trainer.config import TrialConfig
from trainer.errors import InvalidConfig, NonFiniteLoss, OutOfMemory
from trainer.metrics import class_weights
from trainer.optimizers import DECOUPLED, decay_variable, make_optimizer, reset_optimizer
from trainer.records import Dataset

log = logging.getLogger(__name__)

ALL_DATA = 1000  # data_seed's run index for a model trained on all images (folds use 0..k-1)


def data_seed(config: TrialConfig, run: int) -> int:
    """The data-order seed of fold ``run`` (or ``ALL_DATA``) of a configuration."""
    return config.seed * 1009 + run


@contextlib.contextmanager
def oom_as_trial_failure(config: TrialConfig) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if not backend.is_out_of_memory(exc):
            raise
        raise OutOfMemory(
            f"out of memory training {config.backbone} at batch {config.batch_size}, "
            f"size {config.image_size}: {str(exc).splitlines()[0][:300]}"
        ) from exc


def check_images(images: np.ndarray) -> None:
    """Images train as uint8 N x H x W x 3; anything else is refused here, typed."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InvalidConfig(
            f"images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}"
        )


def sample_weights(cfg: TrialConfig, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class loss weights of a run on ``labels``: balanced with ``class_weighting``, else 1."""
    if cfg.class_weighting:
        return class_weights(labels, n_classes)
    return np.ones(n_classes, np.float32)


def phase_of(phases: dict[str, Phase], cfg: TrialConfig, epoch: int) -> str:
    """The phase epoch ``epoch`` trains in: head-only ``warmup`` for the first
    ``warmup_epochs`` when there is one, then ``train``."""
    return "warmup" if "warmup" in phases and epoch < cfg.warmup_epochs else "train"


def train_epoch(
    step: Callable[..., Any], batches: Any, *, where: str, lr: float, cfg: TrialConfig
) -> float:
    """One epoch of ``step`` over ``batches`` (image, one-hot, sample-weight triples); the mean
    loss. NonFiniteLoss, naming ``where``, when it is not a finite number."""
    losses = [step(x, y, w) for x, y, w in batches]  # read back once: no sync per step
    loss = float(np.mean([float(x) for x in losses])) if losses else float("nan")
    if not math.isfinite(loss):
        raise NonFiniteLoss(
            f"training loss became {loss} in {where} ({cfg.optimizer}, learning rate {lr:.3g}); "
            "the configuration diverged"
        )
    return loss


# Set before measuring, not tuned (docs/constants.md).
MAX_KEPT = 4  # models a worker keeps for later trials of the same architecture
MAX_KEPT_PHASES = 2  # optimizer set-ups (with their traced steps) kept per model


@dataclass
class _Kept:
    """A built model a worker keeps: its variables as first built (random seeds included) and
    the inference and statistics passes traced for it."""

    built: BuiltModel
    initial: list[Any]
    knobs: steps.Knobs | None = None  # what its phases' steps read at run time
    phases: dict[tuple[Any, ...], dict[str, Phase]] = field(default_factory=dict)  # by phase_key
    predict: Callable[[np.ndarray], Any] | None = None
    statistics: Callable[[np.ndarray], None] | None = None
    costs: dict[str, float] = field(default_factory=dict)  # model_cost's, by cost

    def phases_for(self, cfg: TrialConfig, steps_per_epoch: int) -> dict[str, Phase]:
        """The phases of ``cfg``: kept ones retuned to its rates and decay, else new ones (the
        two most recent kept: each holds an optimizer's slots)."""
        key = phase_key(cfg, steps_per_epoch)
        phases = self.phases.pop(key, None)
        if phases is None:
            phases = make_phases(self.built, cfg, self.knobs)
        else:
            for name, rate in phase_rates(cfg).items():
                phases[name].retune(rate, cfg.weight_decay)
        self.phases[key] = phases
        while len(self.phases) > MAX_KEPT_PHASES:
            self.phases.pop(next(iter(self.phases)))
        return phases


_KEPT: dict[tuple[Any, ...], _Kept] = {}  # by architecture_key, least recently used first


def architecture_key(cfg: TrialConfig, data: Dataset) -> tuple[Any, ...]:
    """What fixes a built model's graph and first weights: a later trial that matches it trains
    the kept model (``configure`` sets the rest), bit for bit as a fresh build would."""
    return (
        backend.NAME, cfg.backbone, cfg.image_size, cfg.head_width, data.n_classes,
        cfg.precision, cfg.jit_compile, cfg.weights, cfg.weights_dir, cfg.pretrained,
        cfg.unfreeze_depth if cfg.pretrained else -1, cfg.seed,
        data.images.shape[1:], data.images.dtype.str,
    )  # fmt: skip


def forget_models() -> None:
    """Drop every kept model (tests; a worker keeps them until it exits)."""
    _KEPT.clear()


def configure(kept: _Kept, cfg: TrialConfig, steps_per_epoch: int) -> None:
    """Set what a kept model may change between trials: dropout rates, label smoothing and the
    head's L2 (run-time values its steps read) and, from scratch, BatchNorm momentum (part of
    ``phase_key``: steps traced with another momentum are not reused)."""
    built = kept.built
    for layer in built.head_layers:
        if isinstance(layer, RateDropout):
            layer.rate.assign(cfg.dropout)
    if kept.knobs is not None:
        kept.knobs.set(cfg.label_smoothing, cfg.l2)
    if not cfg.pretrained:
        momentum = bn_momentum(cfg, steps_per_epoch)
        for layer in built.backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = momentum


def refresh_batches(steps_per_epoch: int) -> int:
    """Batches BatchNormRefresh averages: 16, but never more than a quarter of an epoch's (at
    least 4), so that on small folds it costs little beside the epoch (bench/overhead.py;
    docs/constants.md)."""
    return min(16, max(4, math.ceil(steps_per_epoch / 4)))


class BatchNormRefresh:
    """Re-estimate BatchNorm statistics on training batches right before each validation.

    Moving averages lag the weights: with tens of steps per epoch they still describe an
    earlier network, and a from-scratch model that fits its batches predicts one class in
    inference mode. Averaging the exact batch statistics of a few clean training batches under
    the current weights ("precise BN") makes epoch-1 validation scores mean something.

    The images of ``max_batches`` training batches go through the statistics pass in chunks of
    up to ``CHUNK`` images. One chunk (most folds) leaves its statistics in the layers as they
    are; several are read back once per chunk and pooled: on backbones with tens of BatchNorm
    layers, reading them after every batch took longer than the forward passes
    (docs/constants.md). Before a validation the pass reads no more whole batches than hold as
    many images as the validation, and no more whole batches than ``BEFORE_VALIDATION`` images
    fill, at least one (``images_read``): one statistics pass, at most about one validation
    pass. The final model's refresh reads all ``max_batches``.
    """

    CHUNK = 256  # images per statistics pass (one batch when a batch is larger)
    # Images a refresh before a validation reads at most, in whole batches, at least one
    # (bench/refresh_cap.py: docs/constants.md)
    BEFORE_VALIDATION = 256

    def __init__(
        self,
        built: BuiltModel,
        cfg: TrialConfig,
        steps_per_epoch: int,
        images: np.ndarray,
        kept: _Kept | None = None,
    ) -> None:
        self.kept = kept if kept is not None else _Kept(built, [])
        self.layers = [
            layer
            for layer in built.model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
        self.max_batches = refresh_batches(steps_per_epoch)
        per_chunk = max(1, min(self.max_batches, self.CHUNK // cfg.batch_size))
        self.chunk = per_chunk * cfg.batch_size  # images per pass
        self.chunks = math.ceil(self.max_batches / per_chunk)
        self.n_images = self.max_batches * cfg.batch_size
        self.batch = cfg.batch_size
        self.images = images
        self.built = built
        self.size = cfg.image_size

    def images_read(self, at_most: int | None = None) -> int:
        """Images a refresh reads (fewer when its index holds fewer): ``max_batches`` batches, or
        before a validation of ``at_most`` images the whole batches that hold them, and no more
        whole batches than ``BEFORE_VALIDATION`` images fill (at least one), so a statistics pass
        compiled for one fold's shape serves the others (rounding down read too few images on
        small folds: docs/refresh_cap.md)."""
        if at_most is None:
            return self.n_images
        whole = math.ceil(max(1, at_most) / self.batch) * self.batch
        most = max(1, self.BEFORE_VALIDATION // self.batch) * self.batch
        return min(self.n_images, whole, most)

    def __call__(
        self, index: np.ndarray, seed: tuple[int, int], at_most: int | None = None
    ) -> None:
        """Re-estimate from clean images of ``images[index]``, shuffled by ``seed``: at most
        ``at_most`` of them (the validation's count; see ``images_read``)."""
        if not self.layers:
            return
        if self.kept.statistics is None:  # made on first use, kept with the model
            self.kept.statistics = steps.statistics_pass(
                self.built.model,
                self.layers,
                self.size,
                self.images.shape[1:],
                self.images.dtype.name,
            )
        forward = self.kept.statistics
        means: list[list[np.ndarray]] = [[] for _ in self.layers]
        variances: list[list[np.ndarray]] = [[] for _ in self.layers]
        counts: list[int] = []
        left = self.images_read(at_most)
        n_chunks = min(self.chunks, math.ceil(left / self.chunk))
        chunks = image_batches(self.images, index, self.chunk, shuffle_seed=seed, limit=n_chunks)
        for x in chunks:
            x = x[:left]  # the last chunk holds the rest
            left -= len(x)
            forward(x)
            counts.append(len(x))
            if n_chunks == 1:
                return  # one pass left exactly its statistics: nothing to pool
            for i, layer in enumerate(self.layers):
                means[i].append(keras.ops.convert_to_numpy(layer.moving_mean))
                variances[i].append(keras.ops.convert_to_numpy(layer.moving_variance))
        if counts:
            pool_statistics(self.layers, counts, means, variances)


def pool_statistics(
    layers: Sequence[keras.layers.BatchNormalization],
    counts: Sequence[int],
    means: Sequence[Sequence[np.ndarray]],
    variances: Sequence[Sequence[np.ndarray]],
) -> None:
    """Set each layer's moving statistics to the pooled mean and variance of several batches'
    (``means[i]``, ``variances[i]``: layer i's, one per batch of ``counts[j]`` images)."""
    share = np.asarray(counts, np.float64)[:, None] / sum(counts)
    for i, layer in enumerate(layers):
        m = np.stack(means[i]).astype(np.float64)
        v = np.stack(variances[i]).astype(np.float64)
        mean = (share * m).sum(axis=0)
        total = (share * (v + (m - mean) ** 2)).sum(axis=0)  # the pooled variance
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(total.astype(layer.moving_variance.dtype))


class Phase:
    """One optimizer over one variable list, with its compiled training step. With ``knobs`` the
    step reads label smoothing, L2 and weight decay at run time (``retune`` sets them), so a kept
    model's later trials reuse it."""

    def __init__(
        self,
        name: str,
        built: BuiltModel,
        cfg: TrialConfig,
        variables,
        lr: float,
        knobs: steps.Knobs | None = None,
    ):
        self.name = name
        self.base_lr = lr
        self.variables = list(variables)
        optimizer = make_optimizer(cfg.optimizer, lr, cfg.weight_decay)
        if cfg.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.optimizer.build(self.variables)
        self.decay = (
            decay_variable(optimizer, cfg.weight_decay)
            if knobs is not None and cfg.optimizer in DECOUPLED
            else None
        )
        self.step = steps.train_step(
            built.model,
            self.variables,
            optimizer,
            smoothing=cfg.label_smoothing,
            size=cfg.image_size,
            n_classes=built.model.output_shape[-1],
            jit=cfg.jit_compile,
            knobs=knobs,
        )

    def retune(self, lr: float, weight_decay: float) -> None:
        """A later trial's base rate and weight decay (a kept phase)."""
        self.base_lr = lr
        if self.decay is not None:
            self.decay.assign(weight_decay)

    def reset(self) -> None:
        reset_optimizer(self.optimizer)
        self.set_lr(self.base_lr)

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate = lr

    @property
    def lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))


def snapshot(variables: Sequence[keras.Variable]) -> list[Any]:
    """The variables' current values as backend tensors that later updates do not change. A
    fifth of ``get_weights``'s cost, which converts each one to NumPy."""
    return [backend.copy(v.value) for v in variables]


def restore(variables: Sequence[keras.Variable], values: Sequence[Any]) -> None:
    """Assign a ``snapshot`` back (a third of ``set_weights``'s cost on TensorFlow)."""
    for variable, value in zip(variables, values, strict=True):
        if backend.TF:
            variable.value.assign(value)
        else:
            variable.assign(value)


def phase_rates(cfg: TrialConfig) -> dict[str, float]:
    """Each phase's base learning rate: 'train' always; 'warmup' (head only, full rate) when a
    pretrained backbone is unfrozen after it, 'train' then at ``finetune_lr_scale``."""
    if not cfg.pretrained or cfg.unfreeze_depth == 0:
        return {"train": cfg.learning_rate}
    rates = {"train": cfg.learning_rate * cfg.finetune_lr_scale}
    if cfg.warmup_epochs > 0:
        rates["warmup"] = cfg.learning_rate
    return rates


def make_phases(
    built: BuiltModel, cfg: TrialConfig, knobs: steps.Knobs | None = None
) -> dict[str, Phase]:
    """The phases of ``phase_rates``: 'train' over every trainable variable (the head alone
    when a pretrained backbone stays frozen), 'warmup' over the head."""
    rates = phase_rates(cfg)
    head = head_variables(built)
    frozen = cfg.pretrained and cfg.unfreeze_depth == 0
    every = head if frozen else built.model.trainable_variables
    phases = {"train": Phase("train", built, cfg, every, rates["train"], knobs)}
    if "warmup" in rates:
        phases["warmup"] = Phase("warmup", built, cfg, head, rates["warmup"], knobs)
    return phases


def phase_key(cfg: TrialConfig, steps_per_epoch: int) -> tuple[Any, ...]:
    """What a kept model's phases bake into their traced steps: the optimizer, the phases, and
    (from scratch) the BatchNorm momentum. A later trial that matches trains with them."""
    momentum = -1.0 if cfg.pretrained else bn_momentum(cfg, steps_per_epoch)
    return (cfg.optimizer, tuple(phase_rates(cfg)), momentum)


@dataclass(frozen=True)
class Trained:
    """One trained epoch: its phase, mean loss, learning rate and seconds (steps and batches)."""

    phase: str
    loss: float
    learning_rate: float
    seconds: float


class ModelRun:
    """One built model, its optimizer phases, BatchNorm refresher and training batches, set up
    once and trained epoch by epoch by a trial's folds or the final model's runs.

    ``timings`` (seconds, summed) gets ``build`` (model, phases, refresher), ``pipeline`` (the
    configuration's batches, traced now) and ``train_steps`` (every ``epoch``).
    """

    def __init__(
        self,
        cfg: TrialConfig,
        data: Dataset,
        steps_per_epoch: int,
        timings: dict[str, float] | None = None,
        *,
        reuse: bool = False,
    ) -> None:
        self.cfg, self.data = cfg, data
        self.timings = timings if timings is not None else {}
        for part in ("build", "pipeline", "train_steps"):
            self.timings.setdefault(part, 0.0)
        start = time.perf_counter()
        key = architecture_key(cfg, data) if reuse else None
        kept = _KEPT.pop(key, None) if key is not None else None
        backend.free_memory(keep_compiled=bool(_KEPT))
        keras.mixed_precision.set_dtype_policy(cfg.precision)
        backend.set_seed(cfg.seed)
        if kept is None:
            built = build_model(cfg, data.n_classes, steps_per_epoch=steps_per_epoch, knobs=reuse)
            # The first variables are kept only for a later trial to restore.
            kept = _Kept(built, snapshot(built.model.variables) if reuse else [])
            kept.knobs = steps.Knobs(head_kernels(built)) if reuse else None
        else:
            restore(kept.built.model.variables, kept.initial)  # as a fresh build leaves them
        configure(kept, cfg, steps_per_epoch)
        if key is not None:
            _KEPT[key] = kept  # the most recent last
            while len(_KEPT) > MAX_KEPT:
                _KEPT.pop(next(iter(_KEPT)))
        self.kept, self.built = kept, kept.built
        self.initial = snapshot(self.built.model.weights)  # what every run starts from
        self.phases = (
            kept.phases_for(cfg, steps_per_epoch) if reuse else make_phases(kept.built, cfg)
        )
        self.refresh = BatchNormRefresh(self.built, cfg, steps_per_epoch, data.images, kept)
        built_at = time.perf_counter()
        self.timings["build"] += built_at - start
        self._batches: dict[tuple[str, int], TrainBatches] = {}
        self._smaller: dict[tuple[str, int], Callable[..., Any]] = {}
        self.batches(cfg.augment, cfg.image_size)
        self.timings["pipeline"] += time.perf_counter() - built_at

    @property
    def predict(self) -> Callable[[np.ndarray], Any]:
        """Raw images -> class probabilities in inference mode (made once per kept model)."""
        if self.kept.predict is None:
            images = self.data.images
            self.kept.predict = steps.forward(
                self.built.model,
                self.cfg.image_size,
                images.shape[1:],
                images.dtype.name,
                jit=self.cfg.jit_compile,
            )
        return self.kept.predict

    def start(self, labels: np.ndarray) -> np.ndarray:
        """Back to the initial weights and fresh optimizers; the class weights of a run on
        ``labels``."""
        restore(self.built.model.weights, self.initial)
        for phase in self.phases.values():
            phase.reset()
        return sample_weights(self.cfg, labels, self.data.n_classes)

    def batches(self, level: str, size: int) -> TrainBatches:
        """Training batches under an augmentation level at a size (made once)."""
        if (level, size) not in self._batches:
            cfg, data = self.cfg, self.data
            self._batches[(level, size)] = TrainBatches(
                cfg.replace(augment=level, image_size=size),
                data.images,
                data.labels,
                data.n_classes,
            )
        return self._batches[(level, size)]

    def step(self, phase_name: str, size: int) -> Callable[..., Any]:
        """The phase's training step at ``size`` px: the model's own, or (made once) a step
        through the same layers and variables on a ``size``-px input, with the same optimizer."""
        phase = self.phases[phase_name]
        if size == self.cfg.image_size:
            return phase.step
        if (phase_name, size) not in self._smaller:
            self._smaller[(phase_name, size)] = steps.train_step(
                at_size(self.built, size),
                phase.variables,
                phase.optimizer,
                smoothing=self.cfg.label_smoothing,
                size=size,
                n_classes=self.built.model.output_shape[-1],
                jit=self.cfg.jit_compile,
                knobs=self.kept.knobs,  # a kept model's head has no L2 of its own
            )
        return self._smaller[(phase_name, size)]

    def epoch(
        self,
        index: np.ndarray,
        epoch: int,
        weights: np.ndarray,
        seed: int,
        *,
        where: str,
        lr: float | None = None,
        level: str | None = None,
        size: int | None = None,
    ) -> Trained:
        """Train epoch ``epoch`` on ``images[index]`` in the phase it belongs to, at rate ``lr``
        (else the phase's current one), under ``level`` at ``size`` px (else the
        configuration's)."""
        level = self.cfg.augment if level is None else level
        size = self.cfg.image_size if size is None else size
        name = phase_of(self.phases, self.cfg, epoch)
        phase = self.phases[name]
        if lr is not None:
            phase.set_lr(lr)
        step = self.step(name, size)
        start = time.perf_counter()
        batches = self.batches(level, size).epoch(index, weights, seed=seed, epoch=epoch)
        loss = train_epoch(step, batches, where=where, lr=phase.lr, cfg=self.cfg)
        seconds = time.perf_counter() - start
        self.timings["train_steps"] += seconds
        return Trained(name, loss, phase.lr, seconds)
