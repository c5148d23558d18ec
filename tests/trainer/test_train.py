"""Whole trials on real blood-cell images (small subsets, small images: CPU-sized)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from trainer import Decision, NonFiniteLoss, OutOfMemory, TrialConfig, backend
from trainer.backbones import build_model
from trainer.folds import make_folds
from trainer.hooks import TrainHooks
from trainer.records import FoldResult
from trainer.train import train_trial


def _go(*_: object) -> Decision:
    return Decision.CONTINUE


@pytest.fixture(scope="module")
def learned(real_small):
    """One 2-fold, 2-epoch small-CNN trial at 64 px, shared by the assertions below."""
    folds = make_folds(real_small.labels, 2, seed=0)
    reports: list[tuple[int, int, float]] = []

    def report(fold, epoch, metrics):
        reports.append((fold, epoch, metrics.balanced_accuracy))
        return Decision.CONTINUE

    cfg = TrialConfig(
        backbone="small_cnn",
        image_size=64,
        epochs=2,
        augment="light",
        optimizer="adamw",
        learning_rate=2e-3,
        seed=1,
    )
    return train_trial(cfg, real_small, folds, report), reports


def test_small_cnn_two_folds_beats_chance(learned, real_small) -> None:
    result, reports = learned
    folds = make_folds(real_small.labels, 2, seed=0)
    assert [(f, e) for f, e, _ in reports] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert not result.stopped and result.completed_folds == 2
    majority = 0.2  # the largest class is under 20% of the images
    assert result.mean_score("accuracy") > majority + 0.15
    for fold in result.folds:
        assert fold.best_epoch in (0, 1)
        assert np.array(fold.confusion).sum() == len(folds[fold.fold].val)
        for name in (
            "accuracy",
            "macro_precision",
            "macro_recall",
            "macro_f1",
            "balanced_accuracy",
            "loss",
        ):
            assert np.isfinite(getattr(fold.best, name))


def test_timings_split_the_trial_into_build_steps_refresh_and_eval(learned) -> None:
    result, _ = learned
    t = result.timings
    assert set(t) == {"build", "pipeline", "train_steps", "bn_refresh", "eval", "trial"}
    assert all(t[k] > 0 for k in t)
    parts = t["build"] + t["pipeline"] + t["train_steps"] + t["bn_refresh"] + t["eval"]
    assert parts <= t["trial"] <= result.seconds + 1e-6


def test_each_phase_is_timed_into_its_own_entry(real_small, monkeypatch) -> None:
    """A clock that moves only inside each phase (the build 1000, an epoch's steps 100, the
    BatchNorm refresh 10, a validation 1): every entry gets exactly its phase's time, and the
    trial's total is their sum, so no phase is counted in another's entry or twice."""
    import types

    from trainer import loop
    from trainer import train as train_module

    clock = [0.0]
    fake = types.SimpleNamespace(perf_counter=lambda: clock[0])
    monkeypatch.setattr(train_module, "time", fake)
    monkeypatch.setattr(loop, "time", fake)

    def ticking(fn, seconds):
        def run(*args, **kwargs):
            clock[0] += seconds
            return fn(*args, **kwargs)

        return run

    monkeypatch.setattr(loop, "build_model", ticking(loop.build_model, 1000.0))
    monkeypatch.setattr(loop, "train_epoch", ticking(loop.train_epoch, 100.0))
    refresh = loop.BatchNormRefresh.__call__
    monkeypatch.setattr(loop.BatchNormRefresh, "__call__", ticking(refresh, 10.0))
    monkeypatch.setattr(train_module, "_validate", ticking(train_module._validate, 1.0))
    loop.forget_models()  # a fresh build
    folds = make_folds(real_small.labels, 3, seed=0)[:2]
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=2, patience=0, seed=2)
    result = train_trial(cfg, real_small, folds, _go)
    loop.forget_models()
    epochs = sum(len(f.epochs) for f in result.folds)
    assert epochs == 4
    t = result.timings
    assert t["build"] == 1000.0
    assert t["pipeline"] == 0.0
    assert t["train_steps"] == 100.0 * epochs
    assert t["bn_refresh"] == 10.0 * epochs
    assert t["eval"] == 1.0 * epochs
    assert t["trial"] == 1000.0 + 111.0 * epochs == result.seconds
    assert [e.seconds for f in result.folds for e in f.epochs] == [111.0] * epochs


@pytest.mark.parametrize(("steps", "batches"), [(3, 4), (12, 4), (40, 10), (63, 16), (500, 16)])
def test_precise_bn_refresh_uses_a_quarter_of_an_epoch_within_4_to_16_batches(steps, batches):
    from trainer.loop import BatchNormRefresh

    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=1)
    built = build_model(cfg, 8, steps_per_epoch=steps)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    refresh = BatchNormRefresh(built, cfg, steps, images)
    assert refresh.layers and refresh.max_batches == batches


@pytest.mark.parametrize(
    ("at_most", "chunk", "passes"),
    [
        (None, 256, [256]),
        (None, 96, [96, 96, 64]),
        (1000, 256, [256]),
        (100, 256, [112]),
        (5, 256, [16]),
        (200, 96, [96, 96, 16]),
        (90, 96, [96]),
    ],
)
def test_precise_bn_refresh_pools_the_statistics_of_exactly_the_images_it_reads(
    at_most, chunk, passes
):
    """16 batches of 16 images, in one pass of 256 or chunks of 96 pooled by their sizes;
    before a validation of ``at_most`` images, only the whole batches that hold as many. Either
    way the first BatchNorm layer holds the mean and variance of its input over the images
    read."""
    from trainer.loop import BatchNormRefresh

    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=1, batch_size=16)
    built = build_model(cfg, 8, steps_per_epoch=64)
    rng = np.random.default_rng(0)  # images of one grey level each: chunks differ in their mean
    grey = rng.integers(0, 224, (288, 1, 1, 1))
    images = (grey + rng.integers(0, 32, (288, 32, 32, 3))).astype(np.uint8)
    refresh = BatchNormRefresh(built, cfg, 64, images)
    refresh.chunk, refresh.chunks = chunk, -(-256 // chunk)
    refresh(np.arange(288), (0, 0))  # builds the statistics pass
    fed: list[np.ndarray] = []
    inner = refresh.kept.statistics
    refresh.kept.statistics = lambda x: fed.append(x) or inner(x)
    refresh(np.arange(288), (0, 1), at_most=at_most)
    assert [len(x) for x in fed] == passes
    assert sum(passes) == refresh.images_read(at_most)
    (backbone,) = [layer for layer in built.model.layers if layer.name == "small_cnn"]
    conv = keras.Model(backbone.input, backbone.get_layer("cnn_block0_conv0").output)
    out = conv.predict(np.concatenate(fed).astype(np.float32), verbose=0).astype(np.float64)
    bn = backbone.get_layer("cnn_block0_bn0")
    mean = keras.ops.convert_to_numpy(bn.moving_mean)
    variance = keras.ops.convert_to_numpy(bn.moving_variance)
    np.testing.assert_allclose(mean, out.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(variance, out.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("batch", "at_most", "read"),
    [
        (32, None, 512),
        (32, 1000, 256),
        (48, 1000, 240),
        (64, 1000, 256),
        (512, 1000, 512),
        (32, 100, 128),
        (32, 0, 32),
    ],
)
def test_a_refresh_before_a_validation_reads_at_most_one_statistics_pass(batch, at_most, read):
    """16 batches (64 steps an epoch): the final model's refresh reads them all; one before a
    validation reads the whole batches that hold the validation's images, and no more whole
    batches than 256 images fill (one batch when a batch is larger), in one pass."""
    from trainer.loop import BatchNormRefresh

    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=1, batch_size=batch)
    built = build_model(cfg, 8, steps_per_epoch=64)
    images = np.random.default_rng(0).integers(0, 255, (600, 32, 32, 3), dtype=np.uint8)
    refresh = BatchNormRefresh(built, cfg, 64, images)
    assert refresh.n_images == 16 * batch and refresh.images_read(at_most) == read
    if at_most is None:
        return  # the final model's refresh: pooled chunks, the test above
    refresh(np.arange(600), (0, 0))  # builds the statistics pass
    fed: list[int] = []
    inner = refresh.kept.statistics
    refresh.kept.statistics = lambda x: fed.append(len(x)) or inner(x)
    refresh(np.arange(600), (0, 1), at_most=at_most)
    assert fed == [read]


def test_a_trials_refresh_is_capped_at_its_folds_validation(real_small, monkeypatch) -> None:
    from trainer import loop

    seen: list[int | None] = []
    refresh = loop.BatchNormRefresh.__call__

    def spy(self, index, seed, at_most=None):
        seen.append(at_most)
        return refresh(self, index, seed, at_most)

    monkeypatch.setattr(loop.BatchNormRefresh, "__call__", spy)
    folds = make_folds(real_small.labels, 3, seed=0)[:2]
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=2, patience=0, seed=2)
    train_trial(cfg, real_small, folds, _go)
    assert seen == [len(folds[0].val)] * 2 + [len(folds[1].val)] * 2


def test_validation_means_something_from_the_first_epoch(learned) -> None:
    """Keras-default BatchNorm predicted one class (balanced accuracy 0.125) at every epoch."""
    _, reports = learned
    first_epochs = [score for fold, epoch, score in reports if epoch == 0]
    assert min(first_epochs) > 0.3


def test_stop_after_the_first_fold_ends_the_trial(real_small) -> None:
    folds = make_folds(real_small.labels, 3, seed=0)
    seen = []
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=1, augment="none")
    result = train_trial(
        cfg, real_small, folds, _go, on_fold=lambda r: seen.append(r.fold) or Decision.STOP
    )
    assert seen == [0]
    assert result.stopped and result.completed_folds == 1 and len(result.folds) == 1
    assert result.stop_reason == "stopped after fold 0"


def test_epoch_stop_and_resume_from_completed_folds(real_small) -> None:
    folds = make_folds(real_small.labels, 2, seed=0)
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=3, augment="none")
    stopped = train_trial(cfg, real_small, folds, lambda f, e, m: Decision.STOP)
    assert stopped.stopped and len(stopped.folds[0].epochs) == 1 and stopped.folds[0].stopped
    assert "fold 0 at epoch 0" in stopped.stop_reason
    # A finished fold 0 handed back in is not trained again.
    done = FoldResult.from_dict({**stopped.folds[0].to_dict(), "stopped": False})
    calls = []
    resumed = train_trial(
        cfg.replace(epochs=1),
        real_small,
        folds,
        lambda f, e, m: calls.append(f) or Decision.CONTINUE,
        completed=[done],
    )
    assert calls == [1] and [f.fold for f in resumed.folds] == [0, 1]


def test_diverging_loss_stops_with_a_clear_reason(real_small) -> None:
    folds = make_folds(real_small.labels, 2, seed=0)
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=2, l2=1e38, augment="none")
    with pytest.raises(NonFiniteLoss, match=r"training loss became (nan|inf) in fold 0, epoch 0"):
        train_trial(cfg, real_small, folds, _go)


def test_out_of_memory_becomes_a_typed_failure(real_small) -> None:
    def oom(fold: int, epoch: int) -> None:
        if epoch == 1:
            raise backend.out_of_memory_error("OOM when allocating tensor")  # the backend's own

    folds = make_folds(real_small.labels, 2, seed=0)
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=2, augment="none")
    with pytest.raises(OutOfMemory, match="out of memory training small_cnn at batch 32"):
        train_trial(cfg, real_small, folds, _go, hooks=TrainHooks(before_epoch=[oom]))


def _mobilenet_weights_file(tmp_path: Path) -> Path:
    """A no-top MobileNetV3Small weights file (random weights) to start 'pretrained' trials."""
    base = build_model(
        TrialConfig(backbone="MobileNetV3Small", image_size=32), 8, steps_per_epoch=10
    ).backbone
    path = tmp_path / "mnv3.weights.h5"
    base.save_weights(path)
    return path


def test_pretrained_two_phase_warms_up_the_head_then_fine_tunes(real_small, tmp_path: Path):
    path = _mobilenet_weights_file(tmp_path)
    cfg = TrialConfig(
        backbone="MobileNetV3Small",
        image_size=32,
        weights=str(path),
        unfreeze_depth=2,
        epochs=2,
        warmup_epochs=1,
        learning_rate=1e-3,
        finetune_lr_scale=0.1,
        augment="none",
        patience=0,
        plateau_patience=0,
    )
    folds = make_folds(real_small.labels, 2, seed=0)
    result = train_trial(cfg, real_small, folds[:1], _go)
    epochs = result.folds[0].epochs
    assert [e.phase for e in epochs] == ["warmup", "train"]
    assert epochs[0].learning_rate == pytest.approx(1e-3)
    assert epochs[1].learning_rate == pytest.approx(1e-4)


def test_each_phase_trains_exactly_its_variables_and_frozen_batchnorm_stays(tmp_path: Path):
    """Warm-up moves the head only; fine-tuning moves the head and the unfrozen top blocks
    (their BatchNorm excluded); nothing else changes, BatchNorm statistics included."""
    from trainer.backbones import head_variables
    from trainer.loop import make_phases

    path = _mobilenet_weights_file(tmp_path)
    cfg = TrialConfig(
        backbone="MobileNetV3Small",
        image_size=32,
        weights=str(path),
        unfreeze_depth=2,
        warmup_epochs=1,
        learning_rate=1e-2,
        augment="none",
    )
    built = build_model(cfg, 8, steps_per_epoch=10)
    phases = make_phases(built, cfg)
    head = {v.path for v in head_variables(built)}
    top = ("expanded_conv_9_", "expanded_conv_10_", "conv_1")  # the top 2 blocks
    unfrozen = {
        v.path
        for layer in built.backbone.layers
        if layer.name.startswith(top) and not isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.weights
    }
    statistics = {
        v.path
        for layer in built.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    }
    assert unfrozen and statistics and not (unfrozen & statistics)
    assert {v.path for v in phases["warmup"].variables} == head
    assert {v.path for v in phases["train"].variables} == head | unfrozen
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32))
    y = keras.ops.one_hot(keras.ops.convert_to_tensor(rng.integers(0, 8, 16)), 8)
    for name, trained in (("warmup", head), ("train", head | unfrozen)):
        before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in built.model.weights}
        phases[name].step(x, y, keras.ops.ones(16))
        moved = {
            v.path
            for v in built.model.weights
            if not np.array_equal(keras.ops.convert_to_numpy(v), before[v.path])
        }
        assert moved <= trained, (name, sorted(moved - trained)[:5])
        assert len(moved) >= 0.9 * len(trained), (name, len(moved), len(trained))
        assert not moved & statistics


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_with_xla_trains_and_keeps_a_float32_softmax(real_small, precision):
    folds = make_folds(real_small.labels, 2, seed=0)
    cfg = TrialConfig(
        backbone="small_cnn",
        image_size=32,
        epochs=1,
        augment="none",
        precision=precision,
        jit_compile=True,
    )
    result = train_trial(cfg, real_small, folds[:1], _go)
    best = result.folds[0].best
    assert np.isfinite(best.loss) and best.accuracy > 0.25
    built = build_model(cfg, 8, steps_per_epoch=10)
    assert built.model.get_layer("head_softmax").compute_dtype == "float32"


def test_robust_accuracy_validates_under_corruptions(real_small, monkeypatch) -> None:
    import trainer.train as train_module
    from trainer.corruptions import corrupt_each

    folds = make_folds(real_small.labels, 2, seed=0)
    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=1, augment="none")
    made = []
    real_sets = train_module._corrupted_sets

    def spy(data, index, fold, cfg):
        made.append((index, real_sets(data, index, fold, cfg)))
        return made[-1][1]

    monkeypatch.setattr(train_module, "_corrupted_sets", spy)
    result = train_trial(cfg, real_small, folds[:1], _go, monitor="robust_accuracy")
    best = result.folds[0].best
    # One corrupted copy of the fold's validation images, every image changed, made once.
    ((index, (corrupted,)),) = made
    clean = real_small.images[folds[0].val]
    assert np.array_equal(index, folds[0].val)
    assert np.array_equal(corrupted, corrupt_each(clean, seed=0)[0])
    assert all((c != x).any() for c, x in zip(corrupted, clean, strict=True))
    assert best.robust_accuracy == pytest.approx((best.accuracy + best.corrupted_accuracy) / 2)
    assert result.mean_score("robust_accuracy") == pytest.approx(best.robust_accuracy)
    # The score is taken on that copy: handed the clean images instead, it equals the accuracy.
    monkeypatch.setattr(train_module, "_corrupted_sets", lambda data, index, fold, cfg: [clean])
    same = train_trial(cfg, real_small, folds[:1], _go, monitor="robust_accuracy").folds[0].best
    assert same.corrupted_accuracy == same.accuracy
    monkeypatch.setattr(train_module, "_corrupted_sets", real_sets)
    plain = train_trial(cfg, real_small, folds[:1], _go)
    assert np.isnan(plain.folds[0].best.robust_accuracy)  # only computed when asked for


def test_weight_snapshots_survive_training_and_restore_exactly() -> None:
    """Folds restart from a snapshot and end on the best epoch's: training must not alter it."""
    from trainer.loop import make_phases, restore, snapshot

    cfg = TrialConfig(backbone="small_cnn", image_size=32, epochs=1)
    built = build_model(cfg, 8, steps_per_epoch=4)
    phase = make_phases(built, cfg)["train"]
    weights = built.model.weights
    before = [keras.ops.convert_to_numpy(w).copy() for w in weights]
    saved = snapshot(weights)
    x = keras.ops.convert_to_tensor(
        np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)), "float32"
    )
    y = keras.ops.one_hot(keras.ops.arange(8) % 8, 8)
    for _ in range(2):
        phase.step(x, y, keras.ops.ones(8))
    assert any(
        not np.array_equal(b, keras.ops.convert_to_numpy(w))
        for b, w in zip(before, weights, strict=True)
    )
    for b, s in zip(before, saved, strict=True):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(s))
    restore(weights, saved)
    for b, w in zip(before, weights, strict=True):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(w))


def test_early_stopping_scores_and_restores_the_best_epoch(real_small, monkeypatch) -> None:
    """Validation accuracy scripted as 0.5, 0.8, 0.6, 0.55 with patience 2: the fold stops
    after epoch 3, its score and confusion are epoch 1's, and the weights it ends with are the
    snapshot taken at epoch 1."""
    import trainer.train as train_module

    script = iter([0.5, 0.8, 0.6, 0.55, 0.5, 0.5])
    real_metrics = train_module.classification_metrics

    def scripted(labels, probs, n_classes):
        values, confusion = real_metrics(labels, probs, n_classes)
        accuracy = next(script)
        values["accuracy"] = accuracy
        return values, np.full_like(confusion, int(accuracy * 100))  # which epoch, visibly

    snapshots: list[list] = []
    restored: list[list] = []
    real_snapshot, real_restore = train_module.snapshot, train_module.restore

    def spy_snapshot(variables):
        values = real_snapshot(variables)
        snapshots.append(values)
        return values

    def spy_restore(variables, values):
        restored.append(values)
        real_restore(variables, values)

    monkeypatch.setattr(train_module, "classification_metrics", scripted)
    monkeypatch.setattr(train_module, "snapshot", spy_snapshot)
    monkeypatch.setattr(train_module, "restore", spy_restore)
    cfg = TrialConfig(
        backbone="small_cnn", image_size=32, epochs=6, patience=2, plateau_patience=0, seed=3
    )
    folds = make_folds(real_small.labels, 2, seed=0)
    (fold,) = train_trial(cfg, real_small, folds[:1], _go).folds
    assert [e.accuracy for e in fold.epochs] == [0.5, 0.8, 0.6, 0.55]
    assert fold.early_stopped and fold.best_epoch == 1
    assert fold.score("accuracy") == 0.8
    assert {v for row in fold.confusion for v in row} == {80}
    # one snapshot per improving epoch (0 and 1; the initial weights are ModelRun's)
    assert len(snapshots) == 2 and restored[-1] is snapshots[1]
