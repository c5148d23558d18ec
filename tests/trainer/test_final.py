"""The model ``search.export`` saves: BatchNorm statistics re-estimated on clean images."""

from __future__ import annotations

import keras
import numpy as np

from search.data.images import resize_all
from trainer.config import TrialConfig
from trainer.final import Tail, fit_all
from trainer.records import Dataset


def test_fit_all_trains_a_tail_and_leaves_batchnorm_statistics_of_clean_images(
    real_small, monkeypatch
):
    """Training batches are augmented (robust: exposure, stain colour, noise...), so the moving
    means describe augmented images; before saving they are re-estimated on clean ones. Here the
    96 images make exactly 3 clean batches of 32, so the first BatchNorm's mean is their mean.
    The last third of the epochs is trained on batches made under the tail's level."""
    from trainer import loop

    made: list[str] = []
    batches = loop.ModelRun.batches

    def spying(self, level, size):
        made.append(level)
        return batches(self, level, size)

    monkeypatch.setattr(loop.ModelRun, "batches", spying)
    data = Dataset(
        resize_all(real_small.images[:96], 32), real_small.labels[:96], real_small.class_names
    )
    config = TrialConfig(
        backbone="small_cnn", image_size=32, augment="robust", batch_size=32, learning_rate=2e-3
    )
    result = fit_all(config, data, 3, tail=Tail("light", 1 / 3))
    assert [e.augment for e in result.epochs] == ["robust", "robust", "light"]
    assert [e.planned for e in result.epochs] == [3, 3, 3]
    # the set-up's batches, then each epoch's: the tail epoch really draws light batches
    assert made == ["robust", "robust", "robust", "light"]
    (backbone,) = [layer for layer in result.model.layers if layer.name == "small_cnn"]
    conv = keras.Model(backbone.input, backbone.get_layer("cnn_block0_conv0").output)
    clean_mean = conv.predict(data.images.astype(np.float32), verbose=0).mean(axis=(0, 1, 2))
    stored = keras.ops.convert_to_numpy(backbone.get_layer("cnn_block0_bn0").moving_mean)
    scale = float(np.abs(clean_mean).mean())
    assert np.abs(stored - clean_mean).max() < 1e-3 * scale + 1e-5


def test_a_tail_is_at_least_one_epoch_and_at_most_all() -> None:
    tail = Tail("light", 1 / 6)
    assert [tail.epochs(n) for n in (1, 3, 6, 30, 33)] == [1, 1, 1, 5, 6]
    assert Tail("light", 1.0).epochs(4) == 4


def test_a_replanned_cosine_never_steps_up_and_still_decays_to_the_end() -> None:
    from trainer.config import TrialConfig
    from trainer.final import cosine_schedule, replanned

    cfg = TrialConfig(backbone="small_cnn", learning_rate=3e-3)
    short = cosine_schedule(cfg, 10)
    for done in range(1, 10):
        for total in (done + 1, 12, 17, 30):  # a deadline that grew or cut the run
            rates = (
                short[:done] + replanned(cosine_schedule(cfg, total), done, short[done - 1])[done:]
            )
            assert len(rates) == max(total, done)
            assert all(b <= a for a, b in zip(rates, rates[1:], strict=False)), (done, total)
            assert rates[-1] < 0.05 * rates[0]


def test_at_size_trains_the_same_variables_on_a_smaller_input(real_small) -> None:
    """The smaller model is the same layers: a step through it moves the full-size model's
    weights, and the full-size model still takes its own size."""
    from trainer.backbones import at_size, build_model

    config = TrialConfig(backbone="small_cnn", image_size=32, batch_size=16)
    built = build_model(config, 8, steps_per_epoch=4)
    small = at_size(built, 16)
    assert small.input_shape[1:3] == (16, 16)
    assert all(a is b for a, b in zip(small.weights, built.model.weights, strict=True))
    before = [keras.ops.convert_to_numpy(v).copy() for v in built.model.trainable_variables]
    x = resize_all(real_small.images[:16], 16).astype(np.float32)
    y = keras.ops.one_hot(real_small.labels[:16], 8)
    small.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    small.train_on_batch(x, y)
    after = [keras.ops.convert_to_numpy(v) for v in built.model.trainable_variables]
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    full = built.model.predict(resize_all(real_small.images[:4], 32).astype(np.float32), verbose=0)
    assert full.shape == (4, 8)


def test_fit_all_trains_its_first_epochs_at_the_progressive_size(real_small, monkeypatch):
    """Progressive resizing: the first half of the epochs see 32 px batches through a 32 px step,
    the rest (the light tail among them) 48 px ones; the saved model is the 48 px one."""
    from trainer import steps
    from trainer.final import Progressive

    seen: list[int] = []
    made = steps.train_step

    def spying(model, variables, optimizer, **kw):
        step = made(model, variables, optimizer, **kw)

        def run(x, y, w):
            seen.append(int(x.shape[1]))
            return step(x, y, w)

        return run

    monkeypatch.setattr(steps, "train_step", spying)
    data = Dataset(
        resize_all(real_small.images[:64], 48), real_small.labels[:64], real_small.class_names
    )
    config = TrialConfig(backbone="small_cnn", image_size=48, augment="robust", batch_size=32)
    result = fit_all(config, data, 4, tail=Tail("light", 1 / 4), progressive=Progressive(32, 0.5))
    assert [e.size for e in result.epochs] == [32, 32, 48, 48]
    assert [e.augment for e in result.epochs] == ["robust", "robust", "robust", "light"]
    assert seen == [32] * 4 + [48] * 4  # two batches an epoch
    assert result.model.input_shape[1:3] == (48, 48)
    assert Progressive(32, 0.5).epochs(1) == 0 and Progressive(32, 0.9).epochs(5) == 4


def test_a_deadline_run_says_its_replanned_epochs_once_at_the_end(real_small, caplog) -> None:
    """A clock that jumps makes the deadline cut a 6-epoch plan short; the log has one line,
    "planned 6 epochs, trained N", and no re-plan per epoch."""
    import logging

    from trainer.final import Deadline

    data = Dataset(
        resize_all(real_small.images[:64], 32), real_small.labels[:64], real_small.class_names
    )
    config = TrialConfig(backbone="small_cnn", image_size=32, augment="none", batch_size=32)
    ticks = iter(range(0, 10_000, 30))  # each reading 30 s later: time runs short at once
    deadline = Deadline(at=100.0, max_epochs=6, clock=lambda: float(next(ticks)))
    with caplog.at_level(logging.INFO, logger="trainer.final"):
        result = fit_all(config, data, 6, deadline=deadline)
    lines = [r.getMessage() for r in caplog.records if r.name == "trainer.final"]
    trained = len(result.epochs)
    assert trained < 6
    assert lines == [
        f"all: planned 6 epochs, trained {trained}: the deadline re-planned them from the run's "
        "own epoch times"
    ]
