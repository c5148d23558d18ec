"""First-epoch time of fold 2 against fold 1: later folds must not trace the graph again.

    python bench/fold_tracing.py [--backbone MobileNetV3Small] [--images 1200] [--size 96]

Prints the ratio and appends a line to docs/fold_tracing.md.
"""

from __future__ import annotations

import argparse

from common import ROOT, machine, real_subset  # noqa: I001

from trainer import Decision, TrialConfig
from trainer.folds import make_folds
from trainer.train import train_trial


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backbone", default="MobileNetV3Small")
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    data = real_subset(args.images)
    folds = make_folds(data.labels, 3, seed=0)
    cfg = TrialConfig(
        backbone=args.backbone,
        image_size=args.size,
        epochs=args.epochs,
        augment="light",
        patience=0,
    )
    result = train_trial(cfg, data, folds, lambda *a: Decision.CONTINUE)
    first = [f.first_epoch_seconds for f in result.folds]
    later = [e.seconds for f in result.folds for e in f.epochs[1:]]
    steady = sum(later) / len(later) if later else float("nan")
    line = (
        f"| {args.backbone} | {args.size} | {len(data)} | "
        + " | ".join(f"{s:.1f}" for s in first)
        + f" | {steady:.1f} | {first[1] / first[0]:.2f} | {result.timings['build']:.1f} |"
    )
    print(
        f"first-epoch seconds per fold {[round(s, 1) for s in first]}, later epochs "
        f"{steady:.1f}s; fold 2 / fold 1 = {first[1] / first[0]:.2f}"
    )
    doc = ROOT / "docs" / "fold_tracing.md"
    if not doc.exists():
        doc.write_text(
            "# Graph tracing across folds (issue 2, item 7)\n\n"
            "Command: `python bench/fold_tracing.py --backbone B --size S`; 3 folds, "
            "first-epoch seconds per fold (includes validation), then a later epoch.\n\n"
            f"Machine: {machine()}\n\n"
            "| backbone | px | images | fold 1 | fold 2 | fold 3 | later epoch | fold 2 / fold 1 "
            "| build s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        )
    with doc.open("a") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
