"""The precise-BN refresh capped at the validation's image count: what it changes in the scores.

``trainer.train`` refreshes BatchNorm statistics before each validation from at most as many
training images as the fold validates (at least one training batch), so the refresh costs about
one validation pass. Before, it read ``refresh_batches`` batches (at least 4), which on small folds
is more images than the validation holds. This trains the quick space's small CNN on small real
subsets (fold 0 of 5, both batch sizes the quick space samples), and after each epoch refreshes
from the same trained weights with several shuffle seeds, uncapped and capped, scoring the
validation fold each time. It reports the validation accuracy's mean over refresh seeds (the
score the pruner sees), its spread over those seeds, and the refresh's images and seconds.

    python bench/refresh_cap.py [--images 300,600] [--epochs 3] [--refresh-seeds 6]

Writes docs/refresh_cap.md and docs/refresh_cap.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

from search.atomic import atomic_write_bytes
from trainer.config import TrialConfig
from trainer.folds import make_folds
from trainer.loop import ModelRun, forget_models, restore, snapshot

PAGE = ROOT / "docs" / "refresh_cap.md"
RESULTS = ROOT / "docs" / "refresh_cap.json"


def accuracy(run: ModelRun, images: np.ndarray, labels: np.ndarray) -> float:
    probs = np.asarray(run.predict(images))
    return float(np.mean(probs.argmax(axis=1) == labels))


def one(n: int, batch: int, epochs: int, refresh_seeds: int, size: int) -> list[dict]:
    data = real_subset(n, seed=3)  # a subset the overhead bench's seed-0 subsets do not fix
    fold = make_folds(data.labels, 5, seed=0)[0]
    cfg = TrialConfig(
        backbone="small_cnn", image_size=size, epochs=epochs, batch_size=batch, seed=1
    )
    forget_models()
    run = ModelRun(cfg, data, max(1, len(fold.train) // batch))
    weights = run.start(data.labels[fold.train])
    val_x, val_y = data.images[fold.val], data.labels[fold.val]
    rows = []
    for epoch in range(epochs):
        run.epoch(fold.train, epoch, weights, seed=0, where=f"epoch {epoch}")
        trained = snapshot(run.built.model.weights)
        for way, at_most in (("uncapped", None), ("capped", len(fold.val))):
            scores, seconds = [], []
            for s in range(refresh_seeds):
                restore(run.built.model.weights, trained)
                start = time.perf_counter()
                run.refresh(fold.train, (100 + s, epoch), at_most=at_most)
                seconds.append(time.perf_counter() - start)
                scores.append(accuracy(run, val_x, val_y))
            images = min(run.refresh.images_read(at_most), len(fold.train))
            rows.append({
                "images": n, "batch": batch, "epoch": epoch, "way": way,
                "validation_images": len(fold.val), "refresh_images": images,
                "accuracy_mean": round(statistics.mean(scores), 4),
                "accuracy_sd": round(statistics.pstdev(scores), 4),
                "refresh_seconds": round(statistics.median(seconds[1:] or seconds), 4),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        restore(run.built.model.weights, trained)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", default="300,600")
    p.add_argument("--batches", default="32,64")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--refresh-seeds", type=int, default=6)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--conditions", default="", help="what ran beside it (printed on the page)")
    args = p.parse_args()
    rows = [
        row
        for n in map(int, args.images.split(","))
        for batch in map(int, args.batches.split(","))
        for row in one(n, batch, args.epochs, args.refresh_seeds, args.size)
    ]
    command = (
        f"python bench/refresh_cap.py --images {args.images} --batches {args.batches} "
        f"--epochs {args.epochs} --refresh-seeds {args.refresh_seeds} --size {args.size}"
    )
    out = {"command": command, "machine": machine(), "conditions": args.conditions, "rows": rows}
    atomic_write_bytes(RESULTS, (json.dumps(out, indent=1) + "\n").encode())
    lines = [
        "# The precise-BN refresh capped at the validation's image count",
        "",
        f"`{command}`: the quick space's small CNN at {args.size} px on real blood-cell subsets, "
        "fold 0 of 5; after each epoch the same weights are refreshed with "
        f"{args.refresh_seeds} shuffle seeds, uncapped (`refresh_batches` batches) and capped "
        "(the validation's count, at least one batch), and the validation fold scored.",
        "",
        f"Machine: {machine()}" + (f"; {args.conditions}" if args.conditions else ""),
        "",
        "| images | batch | epoch | validation images | refresh images (uncapped / capped) | "
        "accuracy mean (uncapped / capped) | sd over refresh seeds (uncapped / capped) | "
        "refresh s (uncapped / capped) |",
        "|---:|---:|---:|---:|---|---|---|---|",
    ]
    pairs = {}
    for r in rows:
        pairs.setdefault((r["images"], r["batch"], r["epoch"]), {})[r["way"]] = r
    diffs = []
    for (n, batch, epoch), w in pairs.items():
        u, c = w["uncapped"], w["capped"]
        diffs.append(c["accuracy_mean"] - u["accuracy_mean"])
        lines.append(
            f"| {n} | {batch} | {epoch} | {u['validation_images']} | {u['refresh_images']} / "
            f"{c['refresh_images']} | {u['accuracy_mean']:.3f} / {c['accuracy_mean']:.3f} | "
            f"{u['accuracy_sd']:.3f} / {c['accuracy_sd']:.3f} | {u['refresh_seconds']:.3f} / "
            f"{c['refresh_seconds']:.3f} |"
        )
    lines += [
        "",
        f"Capped minus uncapped mean accuracy over the {len(diffs)} rows: mean "
        f"{statistics.mean(diffs):+.4f}, range {min(diffs):+.3f}..{max(diffs):+.3f}.",
        "",
    ]
    atomic_write_bytes(PAGE, "\n".join(lines).encode())
    print(lines[-2])


if __name__ == "__main__":
    main()
