"""A trial's batches: NumPy indexing plus functions traced once per worker, made ahead on a thread.

``tf.data`` pipelines built per fold cost a trace of every map function (about 2 s with heavy
augmentation) and each new iterator, i.e. every epoch, a re-instantiation of those functions
(0.85 s an epoch with heavy augmentation on 2 CPU cores; docs/benchmarks.md, item 4). Here a fold
is only a NumPy index: one ``prepare`` function (cast, resize, one-hot, augment, class weights)
is traced for the first trial of each augmentation level and image shape (later trials reuse
it), and a background thread runs it a few batches ahead of the training step. Every batch's
augmentation is seeded by ``(trial seed, fold, epoch, batch)`` alone, so results do not depend
on how far ahead the thread got or on which folds a resumed trial skips.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import keras
import numpy as np

from trainer import backend
from trainer.augment import make_augment
from trainer.config import TrialConfig

T = TypeVar("T")
R = TypeVar("R")

AHEAD = 3  # batches prepared ahead of the training step


def cast_and_resize(images: Any, size: int) -> Any:
    """uint8 N x H x W x 3 -> float32 0..255 at ``size`` x ``size`` (antialiased when shrinking)."""
    images = keras.ops.cast(images, "float32")
    if images.shape[1] != size or images.shape[2] != size:
        images = keras.ops.image.resize(
            images, (size, size), interpolation="bilinear", antialias=True
        )
    return images


def ahead(fn: Callable[[T], R], items: Iterable[T], depth: int = AHEAD) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, computed on one background thread ``depth`` ahead.

    Closing the generator early (a pruned epoch) stops the thread after at most the call in
    flight; an exception in ``fn`` is raised here, in the consumer.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if stop.is_set() or not put((True, fn(item))):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((False, exc))

    thread = threading.Thread(target=run, name="trainer-batches", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = out.get()
            if not ok:
                if value is not None:
                    raise value  # type: ignore[misc]
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def batch_indices(index: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``index`` shuffled by ``rng``, in batches; a partial last batch is dropped when there is
    at least one full batch (a tiny last batch makes BatchNorm statistics noisy)."""
    order = rng.permutation(index)
    if len(order) <= batch:
        return [order]
    return [order[i * batch : (i + 1) * batch] for i in range(len(order) // batch)]


_PREPARED: dict[tuple, Callable[..., Any]] = {}
_KEEP = 4  # traced batch functions a worker keeps (one per augmentation level and shape, say)


def _prepare_fn(
    level: str,
    raw_shape: tuple[int, ...],
    raw_dtype: str,
    size: int,
    n_classes: int,
    symmetry: str = "dihedral",
    colour: str = "shift",
) -> Callable[..., Any]:
    """``(uint8 batch, labels, class weights, seed) -> (x, one-hot, weights)``; traced into a
    graph on TensorFlow, eager on the other backends (its branches depend on the draws).

    It depends only on its key, not on the trial (augmentation is seeded per call), so a worker
    traces it once per augmentation level and image shape and later trials reuse it.
    """
    key = (backend.NAME, level, raw_shape, raw_dtype, size, n_classes, symmetry, colour)
    if key in _PREPARED:
        _PREPARED[key] = _PREPARED.pop(key)  # most recently used last
        return _PREPARED[key]
    augment = make_augment(level, symmetry=symmetry, colour=colour)

    def prepare(images: Any, labels: Any, class_w: Any, seed: Any):
        onehot = keras.ops.one_hot(labels, n_classes, dtype="float32")
        x, onehot = augment(cast_and_resize(images, size), onehot, seed)
        sample_w = keras.ops.sum(onehot * class_w, axis=1)  # soft labels mix their weights
        return x, onehot, sample_w

    fn: Callable[..., Any] = prepare
    if backend.TF:
        import tensorflow as tf

        fn = tf.function(
            prepare,
            input_signature=(
                tf.TensorSpec((None, *raw_shape), tf.as_dtype(raw_dtype)),
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((n_classes,), tf.float32),
                tf.TensorSpec((2,), tf.int64),
            ),
        )
        fn.get_concrete_function()  # trace here, on the trial's own thread
    _PREPARED[key] = fn
    while len(_PREPARED) > _KEEP:
        _PREPARED.pop(next(iter(_PREPARED)))
    return fn


class TrainBatches:
    """Augmented, weighted training batches of one trial, from one traced function."""

    def __init__(self, cfg: TrialConfig, images: np.ndarray, labels: np.ndarray, n_classes: int):
        self.cfg = cfg
        self.images = images
        self.labels = labels.astype(np.int32)
        self.prepare = _prepare_fn(
            cfg.augment,
            images.shape[1:],
            images.dtype.name,
            cfg.image_size,
            n_classes,
            cfg.symmetry,
            cfg.colour,
        )

    def epoch(
        self, index: np.ndarray, class_w: np.ndarray, *, seed: int, epoch: int
    ) -> Iterator[tuple[Any, Any, Any]]:
        """One epoch over ``index``: shuffled by (seed, epoch), each batch seeded on its own."""
        rng = np.random.default_rng([seed, epoch])
        batches = batch_indices(index, self.cfg.batch_size, rng)
        weights = keras.ops.convert_to_tensor(np.asarray(class_w, np.float32))

        def make(numbered: tuple[int, np.ndarray]):
            b, idx = numbered
            batch_seed = backend.batch_seed(seed, epoch * 1_000_003 + b)
            return self.prepare(self.images[idx], self.labels[idx], weights, batch_seed)

        return ahead(make, enumerate(batches))


def image_batches(
    images: np.ndarray,
    index: np.ndarray,
    batch: int,
    *,
    shuffle_seed: tuple[int, int] | None = None,
    limit: int | None = None,
) -> Iterator[np.ndarray]:
    """uint8 batches of ``images[index]`` (shuffled when ``shuffle_seed`` is given), at most
    ``limit`` of them; the consumer's traced function casts and resizes them."""
    if shuffle_seed is None:
        parts = [index[i : i + batch] for i in range(0, len(index), batch)]
    else:
        parts = batch_indices(index, batch, np.random.default_rng(list(shuffle_seed)))
    for idx in parts[:limit]:
        yield images[idx]
