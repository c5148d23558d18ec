"""Overhead: the worker's wall time not spent in steady-state training and validation.

Runs real 10-trial studies through the documented command (``python -m search.run --study
quick`` on a stratified subset of the real blood cells, Keras trainer, one worker), then reads
the timings every trial stores (user attributes ``timings`` and ``fold_<k>``) and the trials'
start/complete times:

  worker wall      first trial's start to last trial's end (the worker's own start-up, i.e.
                   the TensorFlow import and data load, comes before and is excluded)
  steady           training steps + validation, less their tracing (first calls)
  overhead         1 - steady / worker wall: what a user's wall clock sees, broken down into
                   tracing, the precise-BN refresh before each validation, model builds, the
                   trainer's input-pipeline tracing, its own bookkeeping (per-fold set-up,
                   weight copies), waiting on the coordinator's epoch/fold decisions, and the
                   gaps between trials (telling the result, asking and sampling the next trial,
                   storage writes)

It also reports per-trial start cost (model build + fold 1's first epoch minus a typical epoch)
and per-fold re-tracing (a later fold's first epoch minus a typical epoch).

    python bench/overhead.py [--seeds 3] [--images 900] [--size 48] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from common import ROOT, machine, real_subset, save_npz  # noqa: I001

from search.atomic import atomic_write_bytes


def run_study(work: Path, seed: int, args) -> tuple[optuna.Study, float]:
    db = work / f"overhead-{seed}.db"
    cmd = [
        sys.executable, "-m", "search.run", "--study", "quick",
        "--data", str(work / "data.npz"),
        "--storage", f"sqlite:///{db}",
        "--artifacts", str(work / "artifacts"),
        "--n-trials", str(args.trials),
        "--image-size", str(args.size),
        "--epochs", str(args.epochs),
        "--seed", str(seed),
        "-q",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    elapsed = time.perf_counter() - start
    return optuna.load_study(study_name="quick", storage=f"sqlite:///{db}"), elapsed


def measure(study: optuna.Study) -> dict[str, float]:
    """The worker's wall time, split into steady-state training and validation and the rest.

    Tracing is each fold's first epoch minus that trial's typical later epoch (it holds the
    first calls of the training step, the refresh's statistics pass and inference); a trial
    pruned after one epoch per fold has no later epoch, so its first epoch is split with the
    median tracing of the study's other trials of the same backbone. The refresh is its whole
    time; its statistics pass's one trace is in tracing too (a forward pass: small).
    """
    trials = sorted((t for t in study.trials if "timings" in t.user_attrs), key=lambda t: t.number)
    wall = (trials[-1].datetime_complete - trials[0].datetime_start).total_seconds()
    t = {k: sum(tr.user_attrs["timings"].get(k, 0.0) for tr in trials) for k in (
        "build", "pipeline", "train_steps", "bn_refresh", "eval", "trial", "coordinator_wait")}  # fmt: skip
    starts, retraces, epochs, unsplit = [], [], [], []
    fold_epochs = 0
    by_backbone: dict[str, list[float]] = {}
    for tr in trials:
        folds = [tr.user_attrs[k] for k in sorted(tr.user_attrs) if k.startswith("fold_")]
        folds = [f for f in folds if isinstance(f, dict) and "epochs" in f]
        fold_epochs += sum(len(f["epochs"]) for f in folds)
        later = [e["seconds"] for f in folds for e in f["epochs"][1:]]
        first = [f for f in folds if f["fold"] == 0]
        if not later:
            if first:
                unsplit.append((tr.params.get("backbone", ""), first[0]["first_epoch_seconds"]))
            continue
        typical = statistics.median(later)
        epochs.append(typical)
        if first:
            trace = max(0.0, first[0]["first_epoch_seconds"] - typical)
            starts.append(tr.user_attrs["timings"]["build"] + trace)
            by_backbone.setdefault(tr.params.get("backbone", ""), []).append(trace)
        retraces += [max(0.0, f["first_epoch_seconds"] - typical) for f in folds if f["fold"] > 0]
    every = [x for v in by_backbone.values() for x in v]
    guessed = [
        min(sec, statistics.median(by_backbone.get(b) or every or [0.0])) for b, sec in unsplit
    ]
    tracing = sum(every) + sum(retraces) + sum(guessed)
    steady = t["train_steps"] + t["eval"] - tracing
    return {
        "trials": len(trials),
        # what the trials trained: code that changes numerics can change pruning, hence the wall
        "fold_epochs": fold_epochs,
        "wall": wall,
        "steady": steady,
        "share": 1 - steady / wall,
        "tracing": tracing / wall,
        "bn_refresh": t["bn_refresh"] / wall,
        # validation's seconds hold its first calls too (inference traces; a kept model's are reused)
        "refresh_per_validation": t["bn_refresh"] / t["eval"] if t["eval"] else float("nan"),
        "build": t["build"] / wall,
        "pipeline": t["pipeline"] / wall,
        "trainer_other": (
            t["trial"]
            - t["train_steps"]
            - t["bn_refresh"]
            - t["eval"]
            - t["build"]
            - t["pipeline"]
            - t["coordinator_wait"]
        )
        / wall,
        "coordinator_wait": t["coordinator_wait"] / wall,
        "between": (wall - t["trial"]) / wall,
        "coordinator": (t["coordinator_wait"] + wall - t["trial"]) / wall,
        "start_cost": statistics.median(starts) if starts else float("nan"),
        "retrace": statistics.median(retraces) if retraces else float("nan"),
        "epoch": statistics.median(epochs) if epochs else float("nan"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--images", type=int, default=900)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "overhead.md")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_npz(real_subset(args.images), work / "data.npz")
        for seed in range(args.seeds):
            study, elapsed = run_study(work, seed, args)
            m = measure(study)
            m["elapsed"] = elapsed
            rows.append(m)
            print(
                f"seed {seed}: {m['trials']} trials, {m['fold_epochs']} fold-epochs, worker wall "
                f"{m['wall']:.0f}s, overhead "
                f"{m['share']:.2%} (tracing {m['tracing']:.1%}, refresh {m['bn_refresh']:.1%})",
                flush=True,
            )

    def med(key: str) -> float:
        return float(np.median([r[key] for r in rows]))

    def spread(key: str, pct: bool = True, digits: int = 1) -> str:
        vals = [r[key] for r in rows]
        f = (lambda v: f"{v:.2%}") if pct else (lambda v: f"{v:.{digits}f}")
        return f"{f(float(np.median(vals)))} ({f(min(vals))}..{f(max(vals))})"

    lines = [
        "# Overhead: the worker's wall time outside training (issue 7 item 3, issue 20 item 3)",
        "",
        f"Command: `python bench/overhead.py --seeds {args.seeds} --trials {args.trials} "
        f"--images {args.images} --size {args.size} --epochs {args.epochs}`, i.e. "
        f"`python -m search.run --study quick --n-trials {args.trials} --image-size {args.size} "
        f"--epochs {args.epochs}` on {args.images} real images, one CPU worker, SQLite.",
        "",
        f"Machine: {machine()}",
        "",
        f"Median (min..max) over {len(rows)} studies of {args.trials} trials:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| worker wall time after its start, s | {spread('wall', pct=False)} |",
        f"| fold-epochs trained | {spread('fold_epochs', pct=False, digits=0)} |",
        f"| **overhead: the worker's wall time not in steady-state training and validation** | **{spread('share')}** |",
        f"| - tracing (first calls of the training step, refresh and inference; per trial) | {spread('tracing')} |",
        f"| - precise-BN refresh before each validation | {spread('bn_refresh')} |",
        f"| refresh seconds per validation second (validation with its first calls) | {spread('refresh_per_validation', pct=False, digits=2)} |",
        f"| - model builds | {spread('build')} |",
        f"| - input pipeline tracing (first trial of each augmentation level) | {spread('pipeline')} |",
        f"| - trainer bookkeeping (per-fold set-up, weight copies) | {spread('trainer_other')} |",
        f"| - waiting on epoch/fold decisions | {spread('coordinator_wait')} |",
        f"| - between trials (tell, ask, sample, storage) | {spread('between')} |",
        f"| the coordinator's own part (the last two) | {spread('coordinator')} |",
        f"| per-trial start cost (build + first-epoch tracing), s | {spread('start_cost', pct=False)} |",
        f"| per-fold re-tracing cost, s | {spread('retrace', pct=False)} |",
        f"| typical epoch, s | {spread('epoch', pct=False)} |",
        "",
    ]
    text = "\n".join(lines).encode()
    atomic_write_bytes(args.out, text)
    print(
        f"worker wall time outside steady-state training/validation: {med('share'):.2%} "
        f"(tracing {med('tracing'):.2%}, refresh {med('bn_refresh'):.2%}, builds "
        f"{med('build'):.2%}); the coordinator's own part: {med('coordinator'):.2%}"
    )
    print(
        f"per-trial start cost {med('start_cost'):.1f}s, per-fold re-tracing {med('retrace'):.1f}s"
    )


if __name__ == "__main__":
    main()
