"""The trial's batch making: a background thread ahead of the step, deterministic per batch."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest

from trainer import TrialConfig
from trainer.batches import TrainBatches, ahead, image_batches


def test_ahead_yields_in_order_and_stops_its_thread_when_closed() -> None:
    made: list[int] = []

    def make(i: int) -> int:
        made.append(i)
        return i * i

    assert list(ahead(make, range(10))) == [i * i for i in range(10)]
    made.clear()
    gen = ahead(make, range(1000), depth=2)
    assert [next(gen), next(gen)] == [0, 1]
    gen.close()  # a pruned epoch: the consumer stops early; close() joins the thread
    assert len(made) <= 6  # at most the queue, the call in flight and the two taken
    assert not [t for t in threading.enumerate() if t.name == "trainer-batches"]


def test_ahead_raises_the_producers_error_in_the_consumer() -> None:
    def make(i: int) -> int:
        if i == 3:
            raise ValueError("batch 3 is broken")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="batch 3 is broken"):
        for value in ahead(make, range(10)):
            got.append(value)
    assert got == [0, 1, 2]


@pytest.fixture(scope="module")
def small(real_arrays):
    return real_arrays["images"][:200], real_arrays["labels"][:200].astype(np.int64)


def test_an_epoch_depends_only_on_seed_and_epoch(small) -> None:
    images, labels = small
    cfg = TrialConfig(augment="heavy", image_size=48, batch_size=32, seed=3)
    batches = TrainBatches(cfg, images, labels, 8)
    index = np.arange(150)
    weights = np.linspace(0.5, 2.0, 8).astype(np.float32)

    def run(epoch: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [
            tuple(keras.ops.convert_to_numpy(t) for t in b)
            for b in batches.epoch(index, weights, seed=11, epoch=epoch)
        ]

    first = run(0)
    assert len(first) == 150 // 32  # the partial last batch is dropped
    x, y, w = first[0]
    assert x.shape == (32, 48, 48, 3) and y.shape == (32, 8) and w.shape == (32,)
    np.testing.assert_allclose(w, (y * weights).sum(axis=1), rtol=1e-6)
    second = run(1)
    assert any(np.abs(a[0] - b[0]).mean() > 1 for a, b in zip(first, second, strict=True))
    gen = batches.epoch(index, weights, seed=11, epoch=5)
    next(gen)
    gen.close()  # an epoch cut short leaves nothing behind that changes the next one
    again = run(0)
    for a, b in zip(first, again, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)


def test_image_batches_cover_the_index_in_order_or_shuffled(small) -> None:
    images, _ = small
    index = np.arange(10, 110)
    plain = np.concatenate(list(image_batches(images, index, 32)))
    np.testing.assert_array_equal(plain, images[index])
    shuffled = list(image_batches(images, index, 32, shuffle_seed=(1, 2), limit=2))
    assert len(shuffled) == 2 and all(len(b) == 32 for b in shuffled)
    assert not np.array_equal(np.concatenate(shuffled), images[index[:64]])


def test_a_worker_traces_the_batch_function_once_per_level_and_shape(small) -> None:
    images, labels = small
    cfg = TrialConfig(augment="moderate", image_size=40, batch_size=16, seed=1)
    first = TrainBatches(cfg, images, labels, 8)
    before = [
        keras.ops.convert_to_numpy(b[0])
        for b in first.epoch(np.arange(64), np.ones(8, np.float32), seed=2, epoch=0)
    ]
    keras.backend.clear_session()  # what every new trial does
    later = TrainBatches(
        TrialConfig(augment="moderate", image_size=40, batch_size=16, seed=9), images, labels, 8
    )
    assert later.prepare is first.prepare  # no second trace
    after = [
        keras.ops.convert_to_numpy(b[0])
        for b in later.epoch(np.arange(64), np.ones(8, np.float32), seed=2, epoch=0)
    ]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    other = TrainBatches(
        TrialConfig(augment="light", image_size=40, batch_size=16), images, labels, 8
    )
    assert other.prepare is not first.prepare
