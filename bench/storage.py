"""Storage throughput: finished trials/s and errors with 1, 4 and 8 workers, SQLite vs PostgreSQL.

Fast fake trials (``--trainer fake``: 2 folds x 1 epoch, no sleep) through the real command
line, so every number includes the coordinator's storage traffic (ask, per-epoch reports,
fold records, notes, artifacts, tell). PostgreSQL runs when SEARCH_TEST_POSTGRES_URL is set.

    python bench/storage.py [--trials 100] [--workers 1,4,8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import ROOT  # noqa: I001


def run(url: str, name: str, workers: int, trials: int, cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.run",
            "--study",
            "quick",
            "--name",
            name,
            "--data",
            "demo",
            "--image-size",
            "32",
            "--trainer",
            "fake",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--n-trials",
            str(trials),
            "--workers",
            str(workers),
            "--pruner",
            "none",
            "-q",
            "--storage",
            url,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    errors = done.stderr.count("database is locked") + (done.returncode != 0)
    study = optuna.load_study(study_name=name, storage=url)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    return complete / seconds, errors, f"{complete} complete in {seconds:.1f}s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--workers", default="1,4,8")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    backends = [("sqlite", f"sqlite:///{work / 'bench.db'}")]
    if os.environ.get("SEARCH_TEST_POSTGRES_URL"):
        backends.append(("postgresql", os.environ["SEARCH_TEST_POSTGRES_URL"]))
    rows = []
    stamp = int(time.time())
    for backend, url in backends:
        for w in [int(x) for x in args.workers.split(",")]:
            name = f"storage-{backend}-{w}-{stamp}"
            rate, errors, detail = run(url, name, w, args.trials, work)
            rows.append((backend, w, rate, errors, detail))
            print(
                f"{backend:10s} workers={w}: {rate:.2f} trials/s, {errors} errors ({detail})",
                flush=True,
            )
            if backend == "postgresql":
                optuna.delete_study(study_name=name, storage=url)
    base = {b: r for b, w, r, *_ in rows if w == 1}
    for backend, w, rate, _, _ in rows:
        print(f"{backend} {w} workers / 1 worker = {rate / base[backend]:.2f}")
    lines = [
        "# Storage throughput (issue 7, item 5)",
        "",
        f"Command: `python bench/storage.py --trials {args.trials} --workers {args.workers}`"
        " (PostgreSQL 15 on loopback via SEARCH_TEST_POSTGRES_URL)",
        "",
        "Fake trials (2 folds x 1 epoch, instant) through `search.run`, one coordinator with "
        "N worker processes; time includes start-up (demo data, spawning workers).",
        "",
        "| storage | workers | trials/s | errors | detail | vs 1 worker |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for backend, w, rate, errors, detail in rows:
        lines.append(
            f"| {backend} | {w} | {rate:.2f} | {errors} | {detail} | {rate / base[backend]:.2f} |"
        )
    (ROOT / "docs" / "storage.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
