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
        [--ways uncapped,capped,none] [--augment light] [--folds 5] [--subset-seed 3] [--out NAME]

``none`` scores the moving averages training left, with no refresh: what the refresh buys.
``shipped`` is the trainer's rule (``capped`` and at most ``BatchNormRefresh.BEFORE_VALIDATION``);
``atN`` reads the whole batches that hold N images. ``lastN`` reads no extra images: it pools
the statistics the epoch's last training steps computed anyway (the whole batches that hold N
images, augmented, each under its own step's weights), as a refresh folded into training would.
Writes docs/NAME.md and docs/NAME.json (NAME: refresh_cap).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

from search.atomic import atomic_write_bytes
from trainer import steps
from trainer.config import TrialConfig
from trainer.folds import make_folds
from trainer.loop import (
    BatchNormRefresh,
    ModelRun,
    forget_models,
    pool_statistics,
    restore,
    snapshot,
)

# uncapped: refresh_batches batches; capped: the whole batches that hold the validation's images
# (the rule before 2026-12-08); shipped: capped and BatchNormRefresh.BEFORE_VALIDATION, as trials
# run; none: no refresh; atN: the whole batches that hold N images; lastN: the statistics of the
# epoch's last training batches that hold N images, as the training steps computed them.
WAYS = ("uncapped", "capped", "shipped", "none", "atN", "lastN")


def accuracy(run: ModelRun, images: np.ndarray, labels: np.ndarray) -> float:
    probs = np.asarray(run.predict(images))
    return float(np.mean(probs.argmax(axis=1) == labels))


def _at(way: str) -> int | None:
    return int(way[2:]) if way.startswith("at") and way[2:].isdigit() else None


def _last(way: str) -> int | None:
    return int(way[4:]) if way.startswith("last") and way[4:].isdigit() else None


class TrainingStatistics:
    """Records, for the last batches of each epoch, the batch statistics the training step's
    forward pass computes (the trainer's momentum-0 statistics pass on the same augmented batch
    under the same weights, the layers' moving averages put back after it)."""

    def __init__(self, run: ModelRun, level: str, size: int, batches: int):
        import keras

        self.layers = run.refresh.layers
        self.batches = batches
        self.recorded: list[tuple[int, list[np.ndarray], list[np.ndarray]]] = []
        # float32 at the step's size: the pass's cast and resize leave the batch as it is
        self.forward = steps.statistics_pass(
            run.built.model, self.layers, size, (size, size, 3), "float32"
        )
        self._np = keras.ops.convert_to_numpy
        source = run.batches(level, size)
        original = source.epoch

        def epoch(*a, **k):
            items = list(original(*a, **k))
            self.recorded = []
            for i, item in enumerate(items):
                if i >= len(items) - self.batches:
                    self.record(item[0])
                yield item

        source.epoch = epoch  # type: ignore[method-assign]

    def record(self, x) -> None:
        keep = [(self._np(la.moving_mean), self._np(la.moving_variance)) for la in self.layers]
        self.forward(x)
        means = [self._np(la.moving_mean) for la in self.layers]
        variances = [self._np(la.moving_variance) for la in self.layers]
        for layer, (m, v) in zip(self.layers, keep, strict=True):
            layer.moving_mean.assign(m)
            layer.moving_variance.assign(v)
        self.recorded.append((int(x.shape[0]), means, variances))

    def apply(self, n_batches: int) -> int:
        """Pool the last ``n_batches`` recorded batches into the layers; the images pooled."""
        chosen = self.recorded[-n_batches:]
        counts = [c for c, _, _ in chosen]
        by_layer = range(len(self.layers))
        pool_statistics(
            self.layers,
            counts,
            [[means[i] for _, means, _ in chosen] for i in by_layer],
            [[variances[i] for _, _, variances in chosen] for i in by_layer],
        )
        return sum(counts)


def one(n: int, batch: int, args: argparse.Namespace) -> list[dict]:
    # Subset seed 3 by default: a subset the overhead bench's seed-0 subsets do not fix.
    data = real_subset(n, seed=args.subset_seed)
    fold = make_folds(data.labels, args.folds, seed=0)[0]
    epochs, size = args.epochs, args.size
    cfg = TrialConfig(
        backbone="small_cnn",
        image_size=size,
        epochs=epochs,
        batch_size=batch,
        seed=1,
        augment=args.augment,
    )
    forget_models()
    steps = max(1, len(fold.train) // batch)
    run = ModelRun(cfg, data, steps)
    weights = run.start(data.labels[fold.train])
    val_x, val_y = data.images[fold.val], data.labels[fold.val]
    lasts = [n for n in map(_last, args.ways.split(",")) if n]
    recorder = (
        TrainingStatistics(run, args.augment, size, -(-max(lasts) // batch)) if lasts else None
    )
    rows = []

    def row(way: str, images: int, scores: list[float], seconds: list[float]) -> dict:
        return {
            "images": n, "batch": batch, "epoch": epoch, "way": way,
            "augment": args.augment, "steps_per_epoch": steps,
            "validation_images": len(fold.val), "refresh_images": images,
            "accuracy_mean": round(statistics.mean(scores), 4),
            "accuracy_sd": round(statistics.pstdev(scores), 4),
            "refresh_seconds": round(statistics.median(seconds[1:] or seconds), 4),
        }  # fmt: skip

    for epoch in range(epochs):
        run.epoch(fold.train, epoch, weights, seed=0, where=f"epoch {epoch}")
        trained = snapshot(run.built.model.weights)
        for way in args.ways.split(","):
            at_most = len(fold.val) if way in ("capped", "shipped") else _at(way)
            # Only `shipped` keeps the trainer's own ceiling; the others read what they name.
            run.refresh.BEFORE_VALIDATION = (
                BatchNormRefresh.BEFORE_VALIDATION if way == "shipped" else 1 << 30
            )
            scores, seconds = [], []
            if (n_last := _last(way)) is not None:
                assert recorder is not None
                restore(run.built.model.weights, trained)
                pooled = recorder.apply(-(-n_last // batch))
                rows.append(row(way, pooled, [accuracy(run, val_x, val_y)], [0.0]))
                print(json.dumps(rows[-1]), flush=True)
                continue
            for s in range(args.refresh_seeds if way != "none" else 1):
                restore(run.built.model.weights, trained)  # the moving averages training left
                start = time.perf_counter()
                if way != "none":
                    run.refresh(fold.train, (100 + s, epoch), at_most=at_most)
                seconds.append(time.perf_counter() - start)
                scores.append(accuracy(run, val_x, val_y))
            images = min(run.refresh.images_read(at_most), len(fold.train)) if way != "none" else 0
            rows.append(row(way, images, scores, seconds))
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
    p.add_argument("--ways", default="uncapped,capped", help=f"from {','.join(WAYS)}")
    p.add_argument("--augment", default="light", help="the trial's augmentation level")
    p.add_argument("--folds", type=int, default=5, help="fold 0 of this many is scored")
    p.add_argument("--subset-seed", type=int, default=3, help="which real subset of each size")
    p.add_argument("--out", default="refresh_cap", help="docs/OUT.md and docs/OUT.json")
    args = p.parse_args()
    ways = args.ways.split(",")
    if unknown := [w for w in ways if w not in WAYS[:-2] and _at(w) is None and _last(w) is None]:
        raise SystemExit(f"unknown ways {unknown}; choose from {', '.join(WAYS)}")
    rows = [
        row
        for n in map(int, args.images.split(","))
        for batch in map(int, args.batches.split(","))
        for row in one(n, batch, args)
    ]
    command = (
        f"python bench/refresh_cap.py --images {args.images} --batches {args.batches} "
        f"--epochs {args.epochs} --refresh-seeds {args.refresh_seeds} --size {args.size}"
        + "".join(
            f" --{flag.replace('_', '-')} {getattr(args, flag)}"
            for flag in ("ways", "augment", "folds", "subset_seed", "out")
            if getattr(args, flag) != p.get_default(flag)
        )
    )
    out = {"command": command, "machine": machine(), "conditions": args.conditions, "rows": rows}
    atomic_write_bytes(
        ROOT / "docs" / f"{args.out}.json", (json.dumps(out, indent=1) + "\n").encode()
    )
    named = " / ".join(ways)
    lines = [
        "# The precise-BN refresh: capped at the validation's image count, or left out",
        "",
        f"`{command}`: the quick space's small CNN at {args.size} px under `{args.augment}` on real "
        f"blood-cell subsets, fold 0 of {args.folds}; after each epoch the same weights are "
        f"refreshed with {args.refresh_seeds} shuffle seeds, uncapped (`refresh_batches` batches) "
        "or capped (the whole batches that hold the validation's count; `shipped`: that and at "
        f"most {BatchNormRefresh.BEFORE_VALIDATION} images, as trials run; `atN`: the whole "
        "batches that hold N images), or not refreshed "
        "(`none`: the moving averages training left; `lastN`: the statistics the epoch's last training steps computed over the batches that hold N images, pooled, no extra pass), and the validation fold scored.",
        "",
        f"Machine: {machine()}" + (f"; {args.conditions}" if args.conditions else ""),
        "",
        f"| images | batch | steps per epoch | epoch | validation images | refresh images ({named}) "
        f"| accuracy mean ({named}) | sd over refresh seeds ({named}) | refresh s ({named}) |",
        "|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    at: dict[tuple, dict] = {}
    for r in rows:
        at.setdefault((r["images"], r["batch"], r["epoch"]), {})[r["way"]] = r
    for (n, batch, epoch), w in at.items():
        first = w[ways[0]]

        def cells(key: str, form: str, w=w) -> str:
            return " / ".join(format(w[way][key], form) for way in ways)

        lines.append(
            f"| {n} | {batch} | {first['steps_per_epoch']} | {epoch} | "
            f"{first['validation_images']} | {cells('refresh_images', 'd')} | "
            f"{cells('accuracy_mean', '.3f')} | {cells('accuracy_sd', '.3f')} | "
            f"{cells('refresh_seconds', '.3f')} |"
        )
    lines.append("")
    for way in ways[1:]:
        diffs = [w[way]["accuracy_mean"] - w[ways[0]]["accuracy_mean"] for w in at.values()]
        lines.append(
            f"- {way} minus {ways[0]} mean accuracy over the {len(diffs)} rows: mean "
            f"{statistics.mean(diffs):+.4f}, range {min(diffs):+.3f}..{max(diffs):+.3f}."
        )
    lines.append("")
    atomic_write_bytes(ROOT / "docs" / f"{args.out}.md", "\n".join(lines).encode())
    print("\n".join(lines[-len(ways) :]))


if __name__ == "__main__":
    main()
