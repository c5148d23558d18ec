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

Two tables exist. Table A (``--grid a``, docs/hpo_table.json) is the one every pruner and
sampler constant was chosen on. Table B (``--grid b``, docs/hpo_table_b.json) is for reporting
only: 240 configurations over six knobs (five learning rates, head width, batch size), on other
images (``--images-from other``: none of table A's and none of bench/end_to_end.py's held-out
quarter), at another resolution and fold count. ``--shard i/n`` trains every n-th point from the
i-th (one process per core, ``--threads 1``), each shard in its own file; ``--merge`` joins them.

    python bench/hpo_table.py --grid b --images 320 --images-from other --size 36 --folds 3 \
        --epochs 4 --threads 1 --shard 0/2 --out docs/hpo_table_b.part0.json   # and 1/2
    python bench/hpo_table.py --merge docs/hpo_table_b.json docs/hpo_table_b.part*.json

The portfolio tables (``--grid p``, a subset of table B's grid) are the same recording on
table A's blood cells (``--images-from tuning``: table B stays a table nothing is chosen on)
and on other kinds of images (``--dataset digits|mnist5k``, bench/datasets.py), each trained
with the symmetry and colour ``search.run`` reads from that data:

    python bench/hpo_table.py --grid p --images-from tuning --images 320 --size 36 --folds 3 \
        --epochs 4 --threads 1 --shard 0/2 --out docs/hpo_table_bloodcells.part0.json

    python bench/hpo_table.py --grid p --dataset mnist5k --images 320 --size 36 --folds 3 \
        --epochs 4 --threads 1 --shard 0/2 --out docs/hpo_table_mnist5k.part0.json   # and 1/2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

from common import ROOT, machine, table_data  # noqa: I001
from datasets import LOADERS
from replay import key_of

from search.atomic import atomic_write_bytes
from search.data.invariance import measure
from search.policy.traits import decide
from trainer import Decision, TrialConfig
from trainer.errors import TrialFailed
from trainer.folds import make_folds
from trainer.train import train_trial

GRIDS = {
    # Table A, the CPU-sized space the constants were chosen on: 2 x 3 x 2 x 4 = 48.
    "a": {
        "backbone": ["small_cnn", "MobileNetV3Small"],
        "augment": ["none", "light", "heavy"],
        "optimizer": ["adamw", "ranger"],
        "learning_rate": [3e-4, 1e-3, 3e-3, 1e-2],
    },
    # Table B, reported on and never chosen on: 2 x 3 x 2 x 5 x 2 x 2 = 240, learning rates
    # between and beyond table A's.
    "b": {
        "backbone": ["small_cnn", "MobileNetV3Small"],
        "augment": ["none", "light", "heavy"],
        "optimizer": ["adamw", "ranger"],
        "learning_rate": [2e-4, 6e-4, 2e-3, 6e-3, 2e-2],
        "head_width": [0, 128],
        "batch_size": [32, 64],
    },
    # The portfolio tables (bench/portfolio.py): the 48 points of table B that the quick space
    # can draw (its augment levels, learning rates inside its range, no head layer), recorded
    # on other kinds of images with ``--dataset``.
    "p": {
        "backbone": ["small_cnn", "MobileNetV3Small"],
        "augment": ["none", "light"],
        "optimizer": ["adamw", "ranger"],
        "learning_rate": [6e-4, 2e-3, 6e-3],
        "head_width": [0],
        "batch_size": [32, 64],
    },
}
DEFAULT_TABLE = ROOT / "docs" / "hpo_table.json"


def grid_points(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def merge(out: Path, parts: list[Path]) -> None:
    tables = [json.loads(p.read_text()) for p in parts]
    setups = [t["setup"] for t in tables]
    if any(s != setups[0] for s in setups):
        raise SystemExit("the parts were built with different settings")
    points = {k: v for t in tables for k, v in t["points"].items()}
    want = math.prod(len(v) for v in setups[0]["grid"].values())
    print(f"{len(points)} of {want} points in {len(parts)} parts")
    table = {"setup": setups[0], "points": points}
    atomic_write_bytes(out, json.dumps(table, indent=1).encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=900, help="stratified subset of the real data")
    p.add_argument("--size", type=int, default=32, help="image size in pixels")
    p.add_argument("--folds", type=int, default=5, help="the product's default k")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", type=Path, default=DEFAULT_TABLE)
    p.add_argument("--limit", type=int, default=None, help="stop after this many new points")
    p.add_argument("--grid", choices=sorted(GRIDS), default="a")
    p.add_argument(
        "--images-from",
        choices=("all", "other", "tuning"),
        default="all",
        help="other: only images that are neither in table A nor in end_to_end's held-out "
        "quarter (table B's); tuning: only table A's images outside that quarter",
    )
    p.add_argument(
        "--dataset",
        choices=("bloodcells", *sorted(n for n in LOADERS if n != "bloodcells")),
        default="bloodcells",
        help="the images (bench/datasets.py); not bloodcells: a stratified --images subset, "
        "with the symmetry and colour search.run reads from it",
    )
    p.add_argument("--shard", default="0/1", help="i/n: train every n-th grid point from the i-th")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all cores)")
    p.add_argument("--merge", nargs="+", type=Path, help="OUT PART...: join shard files")
    args = p.parse_args()
    if args.merge:
        merge(args.merge[0], args.merge[1:])
        return
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    shard, shards = (int(x) for x in args.shard.split("/"))
    grid = GRIDS[args.grid]
    fixed = {"batch_size": 32, "head_width": 0}
    setup = {
        "dataset": args.dataset,
        "images": args.images,
        "images_from": args.images_from,
        "size": args.size,
        "folds": args.folds,
        "epochs": args.epochs,
        "grid": grid,
        "machine": machine() + (f", {args.threads} thread(s) per process" if args.threads else ""),
        "fixed": ", ".join(
            [f"{k.replace('_', ' ')} {v}" for k, v in fixed.items() if k not in grid]
            + ["weight decay 1e-4, dropout 0.2, seed 0, from scratch"]
        ),
    }
    traits = {"symmetry": "dihedral", "colour": "shift"}  # TrialConfig's, what A and B used
    if args.dataset != "bloodcells" and args.images_from != "all":
        raise SystemExit("--images-from picks blood cells; leave it out with --dataset")
    data = table_data(setup)
    if args.dataset != "bloodcells":
        read = decide("auto", "auto", lambda: measure(data.images, data.labels, seed=0))
        traits = {"symmetry": read.symmetry, "colour": read.colour}
        setup.update(traits)
    setup["images"] = int(len(data.labels))
    folds = make_folds(data.labels, args.folds, seed=0)
    table: dict = {"setup": setup, "points": {}}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        keys = ("dataset", "images", "images_from", "size", "folds", "epochs", "grid")
        was = {"images_from": "all", "dataset": "bloodcells"}  # tables made before the keys
        same = {k: old["setup"].get(k, was.get(k)) for k in keys}
        if same == {k: setup[k] for k in same}:
            table["points"] = old["points"]
        else:
            raise SystemExit(f"{args.out} was built with other settings; move it away first")
    points = grid_points(grid)[shard::shards]
    todo = [pt for pt in points if key_of(pt) not in table["points"]]
    print(f"{len(table['points'])} points done, {len(todo)} to train", flush=True)
    started = time.perf_counter()
    for n, point in enumerate(todo[: args.limit]):
        cfg = TrialConfig(
            image_size=args.size,
            epochs=args.epochs,
            patience=0,  # every epoch is recorded; systems apply their own stopping on replay
            seed=0,
            **traits,
            **{**fixed, **point},
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
