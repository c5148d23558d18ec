"""Input pipeline: a trial's training throughput vs a bare model.fit (issue 7, item 4).

For one backbone, in one process and interleaved so machine noise hits every arm:

  bare          ``model.fit`` on in-memory float32 tensors (no augmentation, no tf.data of
                ours), same model, optimizer, batch size and graph mode (jit_compile off, as
                the trainer runs on CPU)
  ours-none     the trainer's own training loop (``trainer/batches.py``: NumPy shuffle and
                uint8 batches -> one traced cast/resize/augment/class-weights function run
                on a background thread ahead of the step, and ``trainer/train.py``'s
                compiled step) with augmentation ``none``
  ours-heavy    the same with augmentation ``heavy`` (RandAugment, MixUp/CutMix, ...)

Images/s are counted over each epoch after the first (tracing excluded). The headline counts
what a trial's wall clock pays per epoch: the training steps plus the precise-BN refresh the
trainer runs before each validation (work bare ``fit`` does not do); the steps alone are the
second ratio.

    python bench/pipeline.py [--backbone MobileNetV3Small] [--size 96] [--images 1600]
                             [--repeats 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from common import ROOT, machine, real_subset  # noqa: I001

from search.atomic import atomic_write_bytes
from trainer import TrialConfig
from trainer.backbones import build_model
from trainer.batches import TrainBatches
from trainer.loop import BatchNormRefresh, Phase
from trainer.optimizers import make_optimizer


def config(args, augment: str) -> TrialConfig:
    return TrialConfig(
        backbone=args.backbone,
        image_size=args.size,
        augment=augment,
        optimizer="adamw",
        learning_rate=1e-3,
        epochs=args.epochs + 1,
        batch_size=32,
        seed=0,
    )


def bare(args, data) -> float:
    keras.backend.clear_session()
    cfg = config(args, "none")
    n = len(data.labels)
    built = build_model(cfg, data.n_classes, steps_per_epoch=n // cfg.batch_size)
    model = built.model
    model.compile(
        optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate, cfg.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(),
        jit_compile=False,
    )
    x = tf.image.resize(tf.cast(data.images, tf.float32), (args.size, args.size))
    y = tf.one_hot(data.labels, data.n_classes)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(x, y, batch_size=cfg.batch_size, epochs=args.epochs + 1, verbose=0,
              callbacks=[Clock()])  # fmt: skip
    return n / statistics.median(times[1:])  # fit also trains the last partial batch


def ours(args, data, augment: str) -> tuple[float, float]:
    keras.backend.clear_session()
    cfg = config(args, augment)
    index = np.arange(len(data.labels))
    built = build_model(cfg, data.n_classes, steps_per_epoch=len(index) // cfg.batch_size)
    phase = Phase("train", built, cfg, built.model.trainable_variables, cfg.learning_rate)
    refresh = BatchNormRefresh(built, cfg, len(index) // cfg.batch_size, data.images)
    batches = TrainBatches(cfg, data.images, data.labels, data.n_classes)
    ones = np.ones(data.n_classes, np.float32)
    step_times, refresh_times, images = [], [], 0
    for epoch in range(args.epochs + 1):
        t0 = time.perf_counter()
        count, losses = 0, []
        for batch, onehot, weights in batches.epoch(index, ones, seed=0, epoch=epoch):
            losses.append(phase.step(batch, onehot, weights))
            count += int(batch.shape[0])
        float(np.mean([float(v) for v in losses]))  # the trainer reads the losses here too
        t1 = time.perf_counter()
        refresh(index, (0, epoch))
        refresh_times.append(time.perf_counter() - t1)
        step_times.append(t1 - t0)
        images = count
    rate = images / statistics.median(step_times[1:])
    with_refresh = images / statistics.median(
        [s + r for s, r in zip(step_times[1:], refresh_times[1:], strict=True)]
    )
    return rate, with_refresh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="MobileNetV3Small")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--images", type=int, default=1600)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "pipeline.md")
    args = p.parse_args()
    data = real_subset(args.images)
    arms = ("bare", "ours-none", "ours-heavy")
    rates: dict[str, list[float]] = {a: [] for a in arms}
    refreshed: dict[str, list[float]] = {a: [] for a in arms[1:]}
    for rep in range(args.repeats):
        rates["bare"].append(bare(args, data))
        for arm in arms[1:]:
            rate, with_refresh = ours(args, data, arm[5:])
            rates[arm].append(rate)
            refreshed[arm].append(with_refresh)
        print(
            f"repeat {rep}: " + ", ".join(f"{a} {rates[a][-1]:.0f} img/s" for a in arms), flush=True
        )
    ratio = {a: [r / b for r, b in zip(rates[a], rates["bare"], strict=True)] for a in arms[1:]}
    ratio_bn = {
        a: [r / b for r, b in zip(refreshed[a], rates["bare"], strict=True)] for a in arms[1:]
    }

    def fmt(values: list[float], spec: str) -> str:
        return f"{statistics.median(values):{spec}} ({min(values):{spec}}..{max(values):{spec}})"

    goal = {"ours-none": 0.95, "ours-heavy": 0.80}
    lines = [
        "# Input pipeline throughput (issue 7 item 4, issue 20 item 3)",
        "",
        f"Command: `python bench/pipeline.py --backbone {args.backbone} --size {args.size} "
        f"--images {args.images} --repeats {args.repeats} --epochs {args.epochs}`",
        "",
        f"Machine: {machine()}",
        "",
        f"{args.backbone} from scratch at {args.size} px, batch 32, AdamW, {args.images} real "
        f"images; images/s over the training steps of {args.epochs} epochs after the first, "
        f"median (min..max) of {args.repeats} interleaved repeats.",
        "",
        "| arm | images/s, steps + refresh | ratio to bare fit | goal | steps alone: images/s, "
        "ratio |",
        "|---|---:|---:|---:|---:|",
        f"| bare model.fit, in-memory tensors | {fmt(rates['bare'], '.0f')} | 1 | | |",
    ]
    for a in arms[1:]:
        lines.append(
            f"| {a} | {fmt(refreshed[a], '.0f')} | **{fmt(ratio_bn[a], '.2f')}** | "
            f">= {goal[a]:.2f} | {fmt(rates[a], '.0f')}, {fmt(ratio[a], '.2f')} |"
        )
    text = "\n".join(lines + [""]).encode()
    atomic_write_bytes(args.out, text)
    for a in arms[1:]:
        print(
            f"{a}: {statistics.median(ratio_bn[a]):.2f}x bare model.fit images/s with the "
            f"precise-BN refresh (goal >= {goal[a]:.2f}; steps alone "
            f"{statistics.median(ratio[a]):.2f}x)"
        )


if __name__ == "__main__":
    main()
