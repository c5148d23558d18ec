"""The peers of ``bench/end_to_end.py``, each as its users write it, under one wall-clock budget.

- ``run_kerastuner``: KerasTuner 1.4 Hyperband as its documentation teaches: a ``HyperModel``
  over the same backbones (the small CNN, MobileNetV3Small from scratch) and augmentation
  choices, built from standard Keras layers; ``tuner.search`` with ``model.fit`` and a
  validation split; then, as TensorFlow's Hyperband tutorial does verbatim, the best
  hyperparameters trained once with the validation split to find the best epoch count (at
  most ``BEST_EPOCH_SEARCH``: the tutorial's 50 is 5 x its ``max_epochs``), then rebuilt and
  trained for that many epochs, the validation split kept. That first fit stops early once
  the time left would not retrain its best epoch count (``retrain_guard``).
- ``run_kerastuner(best=True)``: the same at its best, as a careful user would run it: every
  BatchNormalization at momentum ``BN_MOMENTUM`` (Keras' 0.99, and MobileNetV3's 0.999, average
  over too few steps on a few thousand images: tests/trainer shows such a model predicting one
  class), and the final model trained on all the images for the best epoch count.
- ``run_autokeras``: AutoKeras 3 ``ImageClassifier`` with its defaults; its best trial's model.

Neither tool takes a wall-clock budget, so both get a ``Deadline`` callback: KerasTuner's search
stops at ``SEARCH_SHARE`` of the budget and the retraining at the budget's end; AutoKeras's
search stops at the budget's end and its best model so far is what it hands back. The deadline
raises ``DeadlineReached`` (a ``BaseException``, so neither tool counts it as a failed trial).

Workarounds a user would apply, and the only ones here:

- AutoKeras 3.0.0 on Keras 3.15 crashes before its first trial on ``Dense(units=np.int64(8))``
  in its classification head (the head takes its width from the shape of the encoded labels, a
  NumPy integer, even with ``num_classes=8`` given): the heads' ``Dense`` is wrapped to pass
  ``int(units)`` (``_patch_autokeras_heads``), nothing else changed.
- KerasTuner imports ``tensorboard`` for its TensorBoard callback support: install it
  (``pip install -e ".[bench]"`` does).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from trainer.records import Dataset

SEARCH_SHARE = 2 / 3  # of the budget KerasTuner searches; the rest retrains the best
HYPERBAND_EPOCHS = 15  # max_epochs: the hand recipe's 15 epochs
BEST_EPOCH_SEARCH = 5 * HYPERBAND_EPOCHS  # the tutorial's best-epoch fit: 50 = 5 x max_epochs
BN_MOMENTUM = 0.9  # the at-its-best row's BatchNormalization momentum (Keras' default: 0.99)
SEED = 0


class DeadlineReached(BaseException):
    """Raised inside ``fit`` when the wall-clock deadline passes (not a trial failure)."""


def deadline_callback(deadline: float, *, stop_quietly: bool = False):
    """A Keras callback: at ``deadline`` (``time.monotonic``), raise, or end training quietly."""
    import keras

    class Deadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() >= deadline:
                if stop_quietly:
                    self.model.stop_training = True
                else:
                    raise DeadlineReached

    return Deadline()


def retrain_guard(deadline: float, share: float):
    """A Keras callback for the best-epoch fit: stop once the time left until ``deadline``
    would not retrain its best epoch so far, each epoch ``1 / share`` as long (on all images)."""
    import keras

    class Guard(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started, self.best, self.best_epoch = time.monotonic(), -1.0, 0

        def on_epoch_end(self, epoch, logs=None):
            if (logs or {}).get("val_accuracy", -1.0) > self.best:
                self.best, self.best_epoch = logs["val_accuracy"], epoch + 1
            per_epoch = (time.monotonic() - self.started) / (epoch + 1) / share
            if time.monotonic() + per_epoch * (self.best_epoch + 1) >= deadline:
                self.model.stop_training = True

    return Guard()


def shuffled(train: Dataset, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 and labels, shuffled once (``validation_split`` takes the last part)."""
    order = np.random.default_rng(seed).permutation(len(train))
    return train.images[order].astype(np.float32), train.labels[order]


def _augmentation(level: str, keras):
    """Standard Keras layers per level (active only in training), the same families as ours."""
    L = keras.layers
    if level == "none":
        return []
    layers = [L.RandomFlip("horizontal_and_vertical", seed=SEED), L.RandomZoom(0.1, seed=SEED)]
    if level == "moderate":
        layers += [
            L.RandomTranslation(0.08, 0.08, seed=SEED),
            L.RandomContrast(0.2, seed=SEED),
            L.RandomBrightness(0.1, value_range=(0, 255), seed=SEED),
        ]
    if level == "robust":
        layers += [
            L.RandomRotation(0.5, fill_mode="reflect", seed=SEED),
            L.RandomTranslation(0.08, 0.08, seed=SEED),
            L.RandomColorJitter(
                value_range=(0, 255),
                brightness_factor=0.12,
                contrast_factor=0.3,
                saturation_factor=(0.4, 0.6),
                hue_factor=0.1,
                seed=SEED,
            ),
            L.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, seed=SEED),
            # GaussianNoise takes a standard deviation of at most 1: about 10 grey levels in 0..1.
            L.Rescaling(1.0 / 255.0),
            L.GaussianNoise(0.04, seed=SEED),
            L.Rescaling(255.0),
        ]
    return layers


def _small_cnn(x, keras, bn_momentum: float = 0.99):
    L = keras.layers
    x = L.Rescaling(1.0 / 255.0)(x)
    for block, filters in enumerate((16, 32, 64, 128)):
        for _ in range(1 if block == 0 else 2):
            x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = L.BatchNormalization(momentum=bn_momentum)(x)
            x = L.ReLU()(x)
        if block < 3:
            x = L.MaxPooling2D()(x)
    return L.GlobalAveragePooling2D()(x)


def hypermodel(size: int, n_classes: int, bn_momentum: float | None = None):
    """KerasTuner's hypermodel; ``bn_momentum`` sets every BatchNormalization's (None: Keras')."""
    import keras
    import keras_tuner as kt

    class BloodCells(kt.HyperModel):
        def build(self, hp):
            backbone = hp.Choice("backbone", ["small_cnn", "MobileNetV3Small"])
            augment = hp.Choice("augment", ["none", "light", "moderate", "robust"])
            inputs = keras.Input((size, size, 3))
            x = inputs
            for layer in _augmentation(augment, keras):
                x = layer(x)
            if backbone == "small_cnn":
                x = _small_cnn(x, keras, bn_momentum or 0.99)
            else:
                base = keras.applications.MobileNetV3Small(
                    input_shape=(size, size, 3), include_top=False, weights=None, pooling="avg"
                )
                for layer in base.layers if bn_momentum else []:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.momentum = bn_momentum  # read at call time: set before tracing
                x = base(x)
            x = keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
            outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
            model = keras.Model(inputs, outputs)
            rate = hp.Float("learning_rate", 3e-4, 1e-2, sampling="log")
            optimizer = {
                "adam": keras.optimizers.Adam,
                "adamw": keras.optimizers.AdamW,
                "lion": keras.optimizers.Lion,
            }[hp.Choice("optimizer", ["adam", "adamw", "lion"])](learning_rate=rate)
            model.compile(
                optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"]
            )
            return model

    return BloodCells()


def run_kerastuner(
    train: Dataset, budget: float, work: Path, *, best: bool = False
) -> tuple[object, dict]:
    """Hyperband, then the tutorial's retrain; ``best``: working BatchNorm, all images."""
    import keras
    import keras_tuner as kt

    start = time.monotonic()
    x, y = shuffled(train)
    model_builder = hypermodel(int(x.shape[1]), train.n_classes, BN_MOMENTUM if best else None)
    tuner = kt.Hyperband(
        model_builder,
        objective="val_accuracy",
        max_epochs=HYPERBAND_EPOCHS,
        factor=3,
        seed=SEED,
        directory=str(work / "kt"),
        project_name="bloodcells",
        overwrite=True,
    )
    stop_early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    try:
        tuner.search(
            x,
            y,
            epochs=HYPERBAND_EPOCHS,
            validation_split=0.2,
            callbacks=[stop_early, deadline_callback(start + SEARCH_SHARE * budget)],
            verbose=0,
        )
    except DeadlineReached:
        pass
    searched = len([t for t in tuner.oracle.trials.values() if t.score is not None])
    hps = tuner.get_best_hyperparameters(1)[0]
    # The tutorial: train the best once with the validation split, take its best epoch ...
    finding = tuner.hypermodel.build(hps)
    history = finding.fit(
        x,
        y,
        epochs=BEST_EPOCH_SEARCH,
        validation_split=0.2,
        callbacks=[
            retrain_guard(start + budget, 0.8 if best else 1.0),
            deadline_callback(start + budget, stop_quietly=True),
        ],
        verbose=0,
    )
    val = history.history.get("val_accuracy") or [0.0]
    epochs = int(np.argmax(val)) + 1
    # ... then rebuild and train for that many epochs (verbatim keeps the validation split).
    model = tuner.hypermodel.build(hps)
    final = model.fit(
        x,
        y,
        epochs=epochs,
        validation_split=0.0 if best else 0.2,
        callbacks=[deadline_callback(start + budget, stop_quietly=True)],
        verbose=0,
    )
    values = {k: v for k, v in hps.values.items() if not k.startswith("tuner/")}
    return model, {
        "model": (
            f"{values['backbone']}, augment {values['augment']}, {values['optimizer']} "
            f"{values['learning_rate']:.2g}, best epoch {epochs} of {len(val)} run, retrained "
            f"{len(final.epoch)} of {epochs} epochs on "
            f"{'all images' if best else '80% of the images (verbatim)'}"
            f"{f', BatchNorm momentum {BN_MOMENTUM}' if best else ''} ({searched} trials scored)"
        )
    }


def _patch_autokeras_heads() -> None:
    """AutoKeras 3.0.0's heads call ``Dense(np.int64)``, which Keras 3.15 refuses; cast it."""
    import keras
    from autokeras.blocks import heads

    class _Layers:
        def __getattr__(self, name):
            return getattr(keras.layers, name)

        @staticmethod
        def Dense(units, *args, **kwargs):
            return keras.layers.Dense(int(units), *args, **kwargs)

    heads.layers = _Layers()


def run_autokeras(train: Dataset, budget: float, work: Path) -> tuple[object, dict]:
    import autokeras as ak

    _patch_autokeras_heads()
    start = time.monotonic()
    x, y = shuffled(train)
    classifier = ak.ImageClassifier(
        directory=str(work / "ak"),
        overwrite=True,
        seed=SEED,
    )
    try:
        classifier.fit(
            x, y, validation_split=0.2, callbacks=[deadline_callback(start + budget)], verbose=0
        )
    except DeadlineReached:
        pass
    tuner = classifier.tuner
    scored = [t for t in tuner.oracle.trials.values() if t.score is not None]
    if scored:
        model = tuner.get_best_models(1)[0]
        return model, {"model": f"its best trial of {len(scored)} scored (trained on 80%)"}
    # The budget ended inside the first trial (its default is 1,000 epochs with early
    # stopping): hand back that trial's best epoch so far, which KerasTuner saved.
    running = [
        t
        for t in tuner.oracle.trials.values()
        if Path(tuner._get_checkpoint_fname(t.trial_id)).exists()
    ]
    if not running:
        raise SystemExit("AutoKeras saved no model within the budget; give it a larger one")
    model = tuner.load_model(running[0])
    return model, {"model": "its first trial's best epoch so far (no trial finished; 80%)"}
