"""Training images/s per backbone: float32 vs mixed precision vs mixed precision + XLA.

    python bench/gpu_throughput.py [--backend jax] [--size 96] [--batch 64] [--steps 20]

Uses the trainer's own training step (``trainer.steps``, through ``trainer.loop.Phase``) on
random uint8-range batches, so the numbers are what a trial's steps cost, without the input
pipeline, on the Keras backend ``--backend`` names (default: ``KERAS_BACKEND``, else
TensorFlow). XLA is a TensorFlow switch; JAX always compiles with XLA and PyTorch runs eagerly,
so there the third row repeats the second. On a machine without GPU it measures the CPU with
fewer steps and says so. Prints one ratio line per backbone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import ROOT, machine  # noqa: I001

if "--backend" in sys.argv:  # before Keras is imported
    os.environ["KERAS_BACKEND"] = sys.argv[sys.argv.index("--backend") + 1]

import keras  # noqa: E402
import numpy as np  # noqa: E402

from search.engine.devices import auto_precision, discover  # noqa: E402
from trainer.backbones import build_model  # noqa: E402
from trainer.config import TrialConfig  # noqa: E402
from trainer.loop import Phase  # noqa: E402

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
    x = keras.ops.convert_to_tensor(rng.integers(0, 256, (batch, size, size, 3)), "float32")
    y = keras.ops.one_hot(keras.ops.convert_to_tensor(rng.integers(0, 8, batch)), 8)
    w = keras.ops.ones(batch)
    start = time.perf_counter()
    float(phase.step(x, y, w))  # trace / compile
    float(phase.step(x, y, w))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = phase.step(x, y, w)
    float(loss)
    seconds = time.perf_counter() - start
    keras.mixed_precision.set_dtype_policy("float32")
    return batch * steps / seconds, first, peak_mib(), getattr(phase.step, "jit", xla)


def on_gpu() -> bool:
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    import jax

    return jax.default_backend() == "gpu"


def peak_mib() -> int:
    """Peak accelerator memory of this process so far (0 on CPU)."""
    if not on_gpu():
        return 0
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] // 2**20
    if name == "torch":
        import torch

        return torch.cuda.max_memory_allocated() // 2**20
    import jax

    return jax.devices()[0].memory_stats().get("peak_bytes_in_use", 0) // 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--backend", default=None, help="tensorflow, jax or torch (KERAS_BACKEND)")
    p.add_argument("--out", default=str(ROOT / "docs" / "gpu_check.md"))
    args = p.parse_args()
    gpus = discover()
    gpu = on_gpu()
    batch = args.batch or (64 if gpu else 16)
    steps = args.steps or (20 if gpu else 2)
    mixed = auto_precision(gpus) if gpu else "mixed_bfloat16"
    device = ", ".join(g.name for g in gpus) if gpu else "no GPU found: CPU"
    backend = keras.backend.backend()
    print(
        f"device: {device}; Keras on {backend}; batch {batch}, {steps} timed steps, "
        f"{args.size}px; mixed = {mixed}"
    )
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
        f"# GPU check on {backend}: training images/s by precision and XLA",
        "",
        f"Command: `bash bench/gpu_check.sh --backend {backend}` (`python bench/gpu_throughput.py "
        f"--backend {backend} --size {args.size} --batch {batch} --steps {steps}`)",
        "",
        f"Device: {device}. Keras on {backend}. Machine: {machine()}.",
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
