"""The precise-BN refresh read back per batch or per chunk: side by side (issue 20, item 3).

Before every validation the trainer re-estimates BatchNorm statistics on the images of a few
clean training batches (``trainer.loop.BatchNormRefresh``; how many batches is
``trainer.loop.refresh_batches``). It passes them in chunks of up to
``BatchNormRefresh.CHUNK`` images and reads each layer's statistics back once per chunk; the
baseline passes one training batch at a time and reads them back after each (``CHUNK`` = the
batch size), as the trainer did before. This trains the same configurations, folds and seeds
both ways, one after the other in one process, and reports per configuration the
cross-validated score (mean over folds of the best epoch's accuracy), the mean absolute
per-epoch accuracy difference, and the seconds spent in the refresh and in the whole trial.

Runs on replay table A's images (``real_subset(900)``), which every constant is chosen on; the
held-out figures (bench/end_to_end.py's quarter) are not touched.

    python bench/bn_refresh.py [--images 900] [--size 32] [--folds 3] [--epochs 4]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

import trainer.loop as loop
from search.atomic import atomic_write_bytes
from trainer import Decision, TrialConfig
from trainer.folds import make_folds
from trainer.train import train_trial

CONFIGS = [
    {"backbone": b, "augment": a, "optimizer": o, "learning_rate": lr}
    for b in ("small_cnn", "MobileNetV3Small")
    for a in ("none", "heavy")
    for o, lr in (("adamw", 1e-3), ("ranger", 3e-3))
] + [
    {"backbone": "EfficientNetV2B0", "augment": "none", "optimizer": "adamw", "learning_rate": 1e-3}
]
BATCH = TrialConfig().batch_size  # the configurations' batch size: the baseline's chunk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=900)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bn_refresh.md")
    args = p.parse_args()
    data = real_subset(args.images)
    folds = make_folds(data.labels, args.folds, seed=0)
    steps = math.ceil(len(folds[0].train) / BATCH)
    chunk = loop.BatchNormRefresh.CHUNK
    variants = {"per batch": BATCH, "chunked": chunk}
    rows = []
    for point in CONFIGS:
        cfg = TrialConfig(image_size=args.size, epochs=args.epochs, patience=0, seed=0, **point)
        got = {}
        for name, images in variants.items():
            loop.BatchNormRefresh.CHUNK = images
            t0 = time.perf_counter()
            result = train_trial(cfg, data, folds, lambda *a: Decision.CONTINUE)
            got[name] = {
                "score": float(np.mean([max(e.accuracy for e in f.epochs) for f in result.folds])),
                "curve": np.array([[e.accuracy for e in f.epochs] for f in result.folds]),
                "refresh": result.timings.get("bn_refresh", 0.0),
                "trial": time.perf_counter() - t0,
            }
        loop.BatchNormRefresh.CHUNK = chunk
        a, b = got["per batch"], got["chunked"]
        rows.append((point, a, b, float(np.mean(np.abs(a["curve"] - b["curve"])))))
        print(
            f"{point}: cv {a['score']:.3f} vs {b['score']:.3f}, refresh {a['refresh']:.1f}s vs "
            f"{b['refresh']:.1f}s, trial {a['trial']:.0f}s vs {b['trial']:.0f}s",
            flush=True,
        )
    diffs = np.array([b["score"] - a["score"] for _, a, b, _ in rows])
    refresh_ratio = sum(b["refresh"] for _, _, b, _ in rows) / sum(
        a["refresh"] for _, a, _, _ in rows
    )
    trial_ratio = sum(b["trial"] for _, _, b, _ in rows) / sum(a["trial"] for _, a, _, _ in rows)
    summary = (
        f"chunked - per batch CV score: mean {diffs.mean():+.4f} (sd {diffs.std(ddof=1):.4f}, "
        f"{len(diffs)} configurations); refresh seconds ratio {refresh_ratio:.2f}, trial seconds "
        f"ratio {trial_ratio:.2f}"
    )
    lines = [
        "# Precise-BN refresh: statistics read back per batch or per chunk (issue 20, item 3)",
        "",
        f"Command: `python bench/bn_refresh.py --images {args.images} --size {args.size} "
        f"--folds {args.folds} --epochs {args.epochs}` (replay table A's images; {steps} training "
        f"steps per epoch, so each refresh averages the images of "
        f"{loop.refresh_batches(steps)} batches of {BATCH}: the trainer passes them in chunks of "
        f"up to {chunk} images, the baseline one batch at a time).",
        "",
        f"Machine: {machine()}",
        "",
        "| configuration | CV per batch | CV chunked | mean abs epoch diff | refresh s | trial s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for point, a, b, curve_diff in rows:
        name = ", ".join(str(v) for v in point.values())
        lines.append(
            f"| {name} | {a['score']:.3f} | {b['score']:.3f} | {curve_diff:.3f} | "
            f"{a['refresh']:.1f} / {b['refresh']:.1f} | {a['trial']:.0f} / {b['trial']:.0f} |"
        )
    lines += ["", summary, ""]
    atomic_write_bytes(args.out, "\n".join(lines).encode())
    print(summary)


if __name__ == "__main__":
    main()
