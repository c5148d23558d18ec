"""Fallback GPU measurement where TensorFlow is absent: the same Keras backbones on Keras 3's
JAX backend (always XLA-compiled), float32 vs mixed_bfloat16, train images/s at 96x96.

    KERAS_BACKEND=jax python bench/keras_jax_gpu.py [--batch 64] [--steps 30]

It measures the card and the Keras models, not this project's TensorFlow training step; the
lent GPU machine has JAX but no TensorFlow, and nothing can be installed there.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

BACKBONES = ("MobileNetV3Small", "EfficientNetV2B3", "ConvNeXtTiny")


def measure(name: str, policy: str, batch: int, steps: int, size: int) -> tuple[float, float]:
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(policy)
    base = getattr(keras.applications, name)(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )
    out = keras.layers.Dense(8, activation="softmax", dtype="float32")(base.output)
    model = keras.Model(base.input, out)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy", jit_compile=True
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    y = np.eye(8, dtype="float32")[rng.integers(0, 8, batch)]
    start = time.perf_counter()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))
    keras.mixed_precision.set_dtype_policy("float32")
    return batch * steps / (time.perf_counter() - start), first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--size", type=int, default=96)
    args = p.parse_args()
    import jax

    print(f"backend {keras.backend.backend()}, devices {jax.devices()}, keras {keras.__version__}")
    for name in BACKBONES:
        fp32, first32 = measure(name, "float32", args.batch, args.steps, args.size)
        mixed, firstm = measure(name, "mixed_bfloat16", args.batch, args.steps, args.size)
        print(
            f"| {name} | {fp32:.0f} | {mixed:.0f} | {mixed / fp32:.2f} | {first32:.1f} | "
            f"{firstm:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
