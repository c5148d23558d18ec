"""Do early validation scores rank configurations like final ones? (issue 2, item 9)

Trains N configurations (small CNN and MobileNetV3Small from scratch, varied optimizer,
learning rate and augmentation) on one fold of the real blood cells, and reports the Spearman
rank correlation between each configuration's epoch-2 validation accuracy and its best
accuracy over all epochs. Writes docs/early_rank.md.

    python bench/early_rank.py [--configs 8] [--epochs 8] [--images 1600] [--size 64]
"""

from __future__ import annotations

import argparse
import time

from common import ROOT, machine, real_subset  # noqa: I001
from scipy.stats import spearmanr

from trainer import Decision, TrialConfig
from trainer.folds import make_folds
from trainer.train import train_trial

GRID = [
    ("small_cnn", "adamw", 2e-3, "light"),
    ("small_cnn", "adam", 3e-4, "none"),
    ("small_cnn", "lion", 3e-4, "light"),
    ("small_cnn", "ranger", 3e-3, "moderate"),
    ("small_cnn", "adamw", 2e-2, "light"),
    ("MobileNetV3Small", "adamw", 2e-3, "light"),
    ("MobileNetV3Small", "adam", 1e-4, "none"),
    ("MobileNetV3Small", "ranger", 1e-3, "moderate"),
    ("small_cnn", "adam", 5e-5, "light"),
    ("MobileNetV3Small", "lion", 1e-3, "light"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--images", type=int, default=1600)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    data = real_subset(args.images)
    fold = make_folds(data.labels, 2, seed=0)[:1]
    rows = []
    for backbone, opt, lr, aug in GRID[: args.configs]:
        cfg = TrialConfig(
            backbone=backbone,
            image_size=args.size,
            epochs=args.epochs,
            optimizer=opt,
            learning_rate=lr,
            augment=aug,
            patience=0,
            seed=0,
        )
        start = time.perf_counter()
        result = train_trial(cfg, data, fold, lambda *a: Decision.CONTINUE)
        curve = [e.accuracy for e in result.folds[0].epochs]
        rows.append((backbone, opt, lr, aug, curve, time.perf_counter() - start))
        print(
            f"{backbone:17s} {opt:6s} lr={lr:<7g} {aug:8s} " + " ".join(f"{a:.3f}" for a in curve),
            flush=True,
        )
    e1 = [r[4][0] for r in rows]
    e2 = [r[4][1] for r in rows]
    final = [max(r[4]) for r in rows]
    rho2, p2 = spearmanr(e2, final)
    rho1, p1 = spearmanr(e1, final)
    print(
        f"spearman(epoch-2, final) = {rho2:.3f} (p {p2:.2g}); spearman(epoch-1, final) = "
        f"{rho1:.3f} (p {p1:.2g}) over {len(rows)} configurations"
    )
    lines = [
        "# Early validation scores rank configurations (issue 2, item 9)",
        "",
        f"Command: `python bench/early_rank.py --configs {args.configs} --epochs {args.epochs} "
        f"--images {args.images} --size {args.size}`",
        "",
        f"Machine: {machine()}",
        "",
        f"One fold (half of {len(data)} real images for training, half for validation), "
        f"{args.epochs} epochs, {args.size}px, from scratch, no early stopping. "
        "Final = best validation accuracy over all epochs.",
        "",
        "| backbone | optimizer | lr | augment | epoch 1 | epoch 2 | final | seconds |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for backbone, opt, lr, aug, curve, sec in rows:
        lines.append(
            f"| {backbone} | {opt} | {lr:g} | {aug} | {curve[0]:.3f} | {curve[1]:.3f} "
            f"| {max(curve):.3f} | {sec:.0f} |"
        )
    lines += [
        "",
        f"**Spearman rank correlation, epoch 2 vs final: {rho2:.3f}** (p = {p2:.2g}, "
        f"n = {len(rows)} configurations; epoch 1 vs final: {rho1:.3f}, p = {p1:.2g}).",
        "",
    ]
    (ROOT / "docs" / "early_rank.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
