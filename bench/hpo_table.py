"""Train every configuration of a small grid once, on real data, and keep every epoch (issue 7).

The search-efficiency and pruning benchmarks (bench/search_efficiency.py) compare search
systems. To make that comparison about search and pruning only, and affordable on 2 CPU cores
for several seeds, every system draws its training outcomes from one table produced here by
the project's own trainer (``trainer.train_trial``) on the real blood cells: each grid point is
trained on every fold for the full number of epochs with early stopping off, and the table keeps
each (fold, epoch)'s validation metrics and seconds, plus the model build time. A system that
"trains" configuration c for e epochs on fold f is shown exactly what the trainer produced for
c, f and epochs 1..e (the same learning-rate schedule, truncated, like resuming from a
checkpoint). This is the tabular-benchmark method (HPOBench, NAS-Bench); its limit is that each
configuration has one training run (one seed) per fold, the same for every system.

The table is resumable: finished grid points are kept in the JSON file and skipped on re-run.

    python bench/hpo_table.py [--images 900] [--size 32] [--folds 5] [--epochs 6]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from common import ROOT, machine, real_subset  # noqa: I001
from replay import KNOBS, key_of

from search.atomic import atomic_write_bytes
from trainer import Decision, TrialConfig
from trainer.errors import TrialFailed
from trainer.folds import make_folds
from trainer.train import train_trial

# The CPU-sized space every system searches: 2 x 3 x 2 x 4 = 48 configurations.
GRID = {
    "backbone": ["small_cnn", "MobileNetV3Small"],
    "augment": ["none", "light", "heavy"],
    "optimizer": ["adamw", "ranger"],
    "learning_rate": [3e-4, 1e-3, 3e-3, 1e-2],
}
assert tuple(GRID) == KNOBS, "replay.key_of keys table points by KNOBS, in GRID's order"
DEFAULT_TABLE = ROOT / "docs" / "hpo_table.json"


def grid_points() -> list[dict]:
    keys = list(GRID)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRID.values())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=900, help="stratified subset of the real data")
    p.add_argument("--size", type=int, default=32, help="image size in pixels")
    p.add_argument("--folds", type=int, default=5, help="the product's default k")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", type=Path, default=DEFAULT_TABLE)
    p.add_argument("--limit", type=int, default=None, help="stop after this many new points")
    args = p.parse_args()

    data = real_subset(args.images)
    folds = make_folds(data.labels, args.folds, seed=0)
    setup = {
        "images": int(len(data.labels)),
        "size": args.size,
        "folds": args.folds,
        "epochs": args.epochs,
        "grid": GRID,
        "machine": machine(),
        "fixed": "batch 32, weight decay 1e-4, dropout 0.2, no head layer, seed 0, from scratch",
    }
    table: dict = {"setup": setup, "points": {}}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        same = {k: old["setup"].get(k) for k in ("images", "size", "folds", "epochs", "grid")}
        if same == {k: setup[k] for k in same}:
            table["points"] = old["points"]
        else:
            raise SystemExit(f"{args.out} was built with other settings; move it away first")
    todo = [pt for pt in grid_points() if key_of(pt) not in table["points"]]
    print(f"{len(table['points'])} points done, {len(todo)} to train", flush=True)
    started = time.perf_counter()
    for n, point in enumerate(todo[: args.limit]):
        cfg = TrialConfig(
            image_size=args.size,
            epochs=args.epochs,
            patience=0,  # every epoch is recorded; systems apply their own stopping on replay
            seed=0,
            **point,
        )
        t0 = time.perf_counter()
        try:
            result = train_trial(cfg, data, folds, lambda *a: Decision.CONTINUE)
            entry = {
                "failed": None,
                "build_seconds": result.timings.get("build", 0.0),
                "folds": [
                    {
                        "accuracy": [e.accuracy for e in f.epochs],
                        "balanced_accuracy": [e.balanced_accuracy for e in f.epochs],
                        "seconds": [e.seconds for e in f.epochs],
                    }
                    for f in result.folds
                ],
            }
        except TrialFailed as exc:
            entry = {"failed": f"{exc.kind}: {exc}", "build_seconds": 0.0, "folds": []}
        entry["wall_seconds"] = time.perf_counter() - t0
        table["points"][key_of(point)] = entry
        atomic_write_bytes(args.out, json.dumps(table, indent=1).encode())
        best = [max(f["accuracy"]) for f in entry["folds"]]
        score = sum(best) / len(best) if best else float("nan")
        elapsed = time.perf_counter() - started
        print(
            f"[{n + 1}/{len(todo)}] {key_of(point)}: cv {score:.3f} in {entry['wall_seconds']:.0f}s"
            f" (elapsed {elapsed / 60:.1f} min)",
            flush=True,
        )


if __name__ == "__main__":
    main()
