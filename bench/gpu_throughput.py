"""Training images/s per backbone: float32 vs mixed precision vs mixed precision + XLA.

    python bench/gpu_throughput.py [--size 96] [--batch 64] [--steps 20] [--out docs/gpu_check.md]

Uses the trainer's own training step (trainer/train.py) on random uint8-range batches, so the
numbers are what a trial's steps cost, without the input pipeline. On a machine without GPU it
measures the CPU with fewer steps and says so. Prints one ratio line per backbone.
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np
import tensorflow as tf
from common import ROOT, machine  # noqa: I001

from search.engine.devices import auto_precision, discover
from trainer.backbones import build_model
from trainer.config import TrialConfig
from trainer.loop import Phase

BACKBONES = ("MobileNetV3Small", "EfficientNetV2B3", "ConvNeXtTiny")


def measure(backbone: str, precision: str, xla: bool, size: int, batch: int, steps: int):
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(precision)
    cfg = TrialConfig(
        backbone=backbone, image_size=size, precision=precision, jit_compile=xla, batch_size=batch
    )
    built = build_model(cfg, 8, steps_per_epoch=50)
    phase = Phase("train", built, cfg, built.model.trainable_variables, 1e-3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (batch, size, size, 3)).astype("float32"))
    y = tf.one_hot(rng.integers(0, 8, batch), 8)
    w = tf.ones(batch)
    start = time.perf_counter()
    float(phase.step(x, y, w))  # trace / compile
    float(phase.step(x, y, w))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = phase.step(x, y, w)
    float(loss)
    seconds = time.perf_counter() - start
    peak = 0
    if tf.config.list_physical_devices("GPU"):
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] // 2**20
    keras.mixed_precision.set_dtype_policy("float32")
    return batch * steps / seconds, first, peak, phase.jit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--out", default=str(ROOT / "docs" / "gpu_check.md"))
    args = p.parse_args()
    gpus = discover()
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    batch = args.batch or (64 if on_gpu else 16)
    steps = args.steps or (20 if on_gpu else 2)
    mixed = auto_precision(gpus) if on_gpu else "mixed_bfloat16"
    device = ", ".join(g.name for g in gpus) if on_gpu else "no GPU found: CPU"
    print(f"device: {device}; batch {batch}, {steps} timed steps, {args.size}px; mixed = {mixed}")
    rows = []
    for backbone in args.backbones.split(","):
        results = {}
        for label, precision, xla in (
            ("fp32", "float32", False),
            ("mixed", mixed, False),
            ("mixed+xla", mixed, True),
        ):
            ips, first, peak, used_xla = measure(backbone, precision, xla, args.size, batch, steps)
            results[label] = ips
            rows.append((backbone, label, ips, first, peak, used_xla))
            print(
                f"  {backbone:17s} {label:10s} {ips:8.1f} img/s  first steps {first:5.1f}s  "
                f"peak {peak} MiB{'' if used_xla == xla else ' (XLA fell back)'}",
                flush=True,
            )
        print(
            f"{backbone}: mixed/fp32 = {results['mixed'] / results['fp32']:.2f}, "
            f"mixed+xla/fp32 = {results['mixed+xla'] / results['fp32']:.2f}"
        )
    lines = [
        "# GPU check: training images/s by precision and XLA",
        "",
        f"Command: `bash bench/gpu_check.sh` (`python bench/gpu_throughput.py --size {args.size} "
        f"--batch {batch} --steps {steps}`)",
        "",
        f"Device: {device}. Machine: {machine()}.",
        "",
        "| backbone | mode | images/s | first two steps (s) | peak GPU MiB | ratio to fp32 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    base = {b: ips for b, label, ips, *_ in rows if label == "fp32"}
    for backbone, label, ips, first, peak, _ in rows:
        lines.append(
            f"| {backbone} | {label} | {ips:.1f} | {first:.1f} | {peak or '-'} | "
            f"{ips / base[backbone]:.2f} |"
        )
    out = args.out
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
