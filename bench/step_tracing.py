"""A trial's first training step with Keras's Adam/AdamW update and with the fused one, side by side.

Every trial builds its model and traces its training step once (folds reuse it); that first call
(Python tracing, then Grappler's graph optimisation) is most of a short trial's overhead
(docs/overhead.md). ``trainer.steps`` updates a plain Keras ``Adam``/``AdamW`` with TensorFlow's
fused ``ResourceApplyAdam`` kernel (``fused_adam``) instead of Keras 3's per-variable graph. This
builds each backbone afresh for each way, interleaved, ``--reps`` times, and reports the
training step's graph size, its first call and the median of the next ``--steps`` calls (batch
32 of real images at ``--size`` px, weights=None).

    python bench/step_tracing.py [--size 48] [--reps 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

from search.atomic import atomic_write_bytes
from search.data.images import resize_all
from trainer import TrialConfig
from trainer.backbones import build_model
from trainer.loop import make_phases

BACKBONES = ("small_cnn", "MobileNetV3Small", "EfficientNetV2B0")
OPTIMIZERS = ("adam", "adamw")
WAYS = ("keras", "fused")


def one(backbone: str, optimizer: str, way: str, x, y, w, steps: int, seed: int) -> dict:
    cfg = TrialConfig(
        backbone=backbone, image_size=x.shape[1], optimizer=optimizer, augment="none", seed=seed
    )
    built = build_model(cfg, y.shape[1], steps_per_epoch=50)
    step = make_phases(built, cfg)["train"].step
    if way == "keras":
        step.fused = None  # read when the step is traced, on its first call
    elif step.fused is None:
        raise SystemExit(f"{optimizer} did not get the fused update")
    start = time.perf_counter()
    float(step(x, y, w))
    first = time.perf_counter() - start
    later = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(x, y, w))
        later.append(time.perf_counter() - start)
    ops = len(step._compiled.get_concrete_function().graph.get_operations())
    return {"first": first, "step": statistics.median(later), "ops": ops}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "step_tracing.md")
    args = p.parse_args()
    data = real_subset(32)
    x = resize_all(data.images, args.size).astype(np.float32)
    y = np.eye(data.n_classes, dtype=np.float32)[data.labels]
    w = np.ones(len(x), np.float32)
    rows = []
    for backbone in BACKBONES:
        for optimizer in OPTIMIZERS:
            got: dict[str, list[dict]] = {way: [] for way in WAYS}
            for rep in range(args.reps):
                for way in WAYS:
                    got[way].append(one(backbone, optimizer, way, x, y, w, args.steps, rep))
            med = {
                way: {k: statistics.median(r[k] for r in got[way]) for k in got[way][0]}
                for way in WAYS
            }
            rows.append((backbone, optimizer, med))
            k, f = med["keras"], med["fused"]
            print(
                f"{backbone} {optimizer}: ops {k['ops']:.0f} -> {f['ops']:.0f}, first call "
                f"{k['first']:.2f} -> {f['first']:.2f} s, step {1e3 * k['step']:.1f} -> "
                f"{1e3 * f['step']:.1f} ms",
                flush=True,
            )
    first_ratio = [m["fused"]["first"] / m["keras"]["first"] for _, _, m in rows]
    step_ratio = [m["fused"]["step"] / m["keras"]["step"] for _, _, m in rows]
    summary = (
        f"fused / Keras, median over the {len(rows)} rows: first call "
        f"{statistics.median(first_ratio):.2f} ({min(first_ratio):.2f}..{max(first_ratio):.2f}), "
        f"later step {statistics.median(step_ratio):.2f} "
        f"({min(step_ratio):.2f}..{max(step_ratio):.2f})"
    )
    lines = [
        "# The training step's first call: Keras's Adam update against the fused one",
        "",
        f"Command: `python bench/step_tracing.py --size {args.size} --reps {args.reps} --steps "
        f"{args.steps}` (one batch of 32 real images, weights=None; each row the median of "
        f"{args.reps} fresh builds per way, the ways interleaved). The first call traces the "
        "step and optimises its graph; every trial pays it once.",
        "",
        f"Machine: {machine()}",
        "",
        "| backbone | optimizer | graph ops Keras / fused | first call s Keras / fused | "
        "later step ms Keras / fused |",
        "|---|---|---:|---:|---:|",
    ]
    for backbone, optimizer, m in rows:
        k, f = m["keras"], m["fused"]
        lines.append(
            f"| {backbone} | {optimizer} | {k['ops']:.0f} / {f['ops']:.0f} | "
            f"{k['first']:.2f} / {f['first']:.2f} | {1e3 * k['step']:.1f} / "
            f"{1e3 * f['step']:.1f} |"
        )
    lines += ["", summary, ""]
    atomic_write_bytes(args.out, "\n".join(lines).encode())
    print(summary)


if __name__ == "__main__":
    main()
