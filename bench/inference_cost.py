"""One image's forward pass against one training step's, per image: the evidence for
``trainer.calibrate.INFERENCE_COST`` (issue 40, item 4).

The budget planner charges the trust calibration (a forward pass over the training images and
the calibration slice's views and shifts) in training epochs through that ratio. This builds each
backbone as trials do (``trainer.backbones.build_model``, random init), times warm training steps
(``train_on_batch``, AdamW) and warm inference passes (``predict_on_batch``) on the same batches of
real cells, and reports the median per-image ratio. Only image timings on this machine's CPU: no
accuracy is measured and no held-out image is read beyond its pixels.

    python bench/inference_cost.py [--repeats 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

from search.atomic import atomic_write_bytes
from search.data.images import resize_all
from trainer import TrialConfig
from trainer.backbones import build_model
from trainer.calibrate import INFERENCE_COST

POINTS = [
    ("small_cnn", 64),
    ("small_cnn", 96),
    ("MobileNetV3Small", 96),
    ("EfficientNetV2B0", 96),
]


def _median_seconds(fn, repeats: int) -> float:
    fn()  # trace / warm up
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "inference_cost.md")
    args = p.parse_args()
    import keras

    data = real_subset(args.batch)
    rows = []
    for backbone, size in POINTS:
        keras.utils.clear_session()
        cfg = TrialConfig(backbone=backbone, image_size=size, weights="none")
        n_classes = int(data.labels.max()) + 1
        model = build_model(cfg, n_classes, steps_per_epoch=50).model
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy")
        x = resize_all(data.images, size).astype(np.float32)
        y = keras.utils.to_categorical(data.labels, n_classes)
        train = _median_seconds(lambda m=model, x=x, y=y: m.train_on_batch(x, y), args.repeats)
        infer = _median_seconds(lambda m=model, x=x: m.predict_on_batch(x), args.repeats)
        rows.append(
            {
                "backbone": backbone,
                "size": size,
                "train_ms_per_image": 1000 * train / len(x),
                "forward_ms_per_image": 1000 * infer / len(x),
                "ratio": infer / train,
            }
        )
        print(rows[-1], flush=True)
    ratios = [r["ratio"] for r in rows]
    result = {
        "command": "python bench/inference_cost.py",
        "machine": machine(),
        "batch": args.batch,
        "repeats": args.repeats,
        "rows": rows,
        "median_ratio": float(np.median(ratios)),
        "constant": INFERENCE_COST,
    }
    lines = [
        "# One image's forward pass against one training step's",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']}. Batches of "
        f"{args.batch} real cells, median of {args.repeats} warm calls each, random init, AdamW.",
        "",
        "| backbone | px | training step, ms an image | forward pass, ms an image | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['size']} | {r['train_ms_per_image']:.3f} | "
            f"{r['forward_ms_per_image']:.3f} | {r['ratio']:.2f} |"
        )
    lines += [
        "",
        f"Median ratio {result['median_ratio']:.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); "
        f"`trainer.calibrate.INFERENCE_COST` is {INFERENCE_COST}, the figure the budget planner "
        "charges the trust calibration's forward passes with (in training epochs).",
        "",
    ]
    atomic_write_bytes(args.out, "\n".join(lines).encode())
    atomic_write_bytes(args.out.with_suffix(".json"), json.dumps(result, indent=1).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
