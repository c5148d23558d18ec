"""The same trials on every Keras backend: cross-validation accuracy and training images/s.

    python bench/backends.py [--backends tensorflow,jax,torch] [--seeds 2] [--images 800]

Each backend runs in its own process (``KERAS_BACKEND`` is read when Keras is first imported),
one after the other, with the trainer's own ``train_trial`` on the same real images, the same
folds and the same configurations, each at ``--seeds`` seeds. Agreement is judged against noise
measured the same way: the spread of a configuration's accuracy over seeds on TensorFlow.
Training images/s: over the training steps of the whole trial (``timings["train_steps"]``,
compiling included, as a trial pays it), and over whole epochs after each fold's first (steps,
BatchNorm refresh and validation: the steady state, no compiling). Writes ``docs/backends.md`` and ``docs/backends.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT, machine, real_subset  # noqa: I001

CONFIGS = [
    {"backbone": "small_cnn", "augment": "light", "optimizer": "adamw", "learning_rate": 2e-3},
    {"backbone": "small_cnn", "augment": "robust", "optimizer": "ranger", "learning_rate": 3e-3},
    {
        "backbone": "MobileNetV3Small",
        "augment": "moderate",
        "optimizer": "lion",
        "learning_rate": 3e-4,
    },
]


def run_one(args: argparse.Namespace) -> None:
    """In the child: every configuration and seed on this process's backend, as JSON lines."""
    import keras

    from trainer.config import Decision, TrialConfig
    from trainer.folds import make_folds
    from trainer.train import train_trial

    data = real_subset(args.images, seed=11)
    folds = make_folds(data.labels, args.folds, seed=0)
    chosen = [int(c) for c in args.configs.split(",")] if args.configs else range(len(CONFIGS))
    for c in chosen:
        params = CONFIGS[c]
        for seed in range(args.seeds):
            cfg = TrialConfig(
                **params, image_size=args.size, epochs=args.epochs, seed=seed, patience=0
            )
            start = time.perf_counter()
            result = train_trial(cfg, data, folds, lambda *_: Decision.CONTINUE)
            trained = sum(len(f.train) for f in folds) * args.epochs
            later = [e.seconds for f in result.folds for e in f.epochs if e.epoch > 0]
            row = {
                "backend": keras.backend.backend(),
                "config": c,
                "seed": seed,
                "accuracy": result.mean_score("accuracy"),
                "images_per_second": trained / result.timings["train_steps"],
                # whole epochs after the first (steps, BatchNorm refresh, validation): no compiling
                "steady_images_per_second": sum(len(f.train) for f in folds)
                * (args.epochs - 1)
                / max(sum(later), 1e-9),
                "seconds": time.perf_counter() - start,
            }
            print("ROW " + json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--images", type=int, default=800)
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--configs", default="", help="indices into CONFIGS (default: all)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "docs" / "backends.md"))
    args = p.parse_args()
    if args.child:
        run_one(args)
        return
    rows = []
    for backend in args.backends.split(","):
        print(f"== {backend}", flush=True)
        child = [sys.executable, __file__, "--child", *sys.argv[1:]]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(child, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{backend} failed:\n{done.stderr[-3000:]}")
        for line in done.stdout.splitlines():
            if line.startswith("ROW "):
                rows.append(json.loads(line[4:]))
                print("  ", line[4:], flush=True)
    write(rows, args)


def _stats(rows: list[dict], backend: str, config: int, key: str) -> list[float]:
    return [r[key] for r in rows if r["backend"] == backend and r["config"] == config]


def write(rows: list[dict], args: argparse.Namespace) -> None:
    import numpy as np

    backends = list(dict.fromkeys(r["backend"] for r in rows))
    base = backends[0]
    lines = [
        "# The same trials on every Keras backend",
        "",
        f"Command: `python bench/backends.py --backends {','.join(backends)} --seeds "
        f"{args.seeds} --images {args.images}` ({args.folds}-fold CV, {args.epochs} epochs, "
        f"{args.size} px, weights none, on {args.images} real blood-cell images; every backend "
        "in its own process, one after the other). Machine: " + machine() + ".",
        "",
        f"Noise: the standard deviation of a configuration's CV accuracy over its {args.seeds} "
        f"seeds on {base}; a backend agrees when its mean is within 2 of those (or 2 points, "
        "whichever is larger) of the first backend's.",
        "",
        "| configuration | backend | CV accuracy (mean of seeds) | seed sd | "
        f"difference to {base} | training steps images/s (ratio) | later epochs images/s "
        "(ratio) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for c in sorted({r["config"] for r in rows}):
        params = CONFIGS[c]
        name = f"{params['backbone']} {params['augment']} {params['optimizer']}"
        ref_acc = float(np.mean(_stats(rows, base, c, "accuracy")))
        ref_sd = float(np.std(_stats(rows, base, c, "accuracy"), ddof=1)) if args.seeds > 1 else 0
        ref_ips = float(np.mean(_stats(rows, base, c, "images_per_second")))
        ref_steady = float(np.mean(_stats(rows, base, c, "steady_images_per_second")))
        for b in backends:
            acc = _stats(rows, b, c, "accuracy")
            ips = float(np.mean(_stats(rows, b, c, "images_per_second")))
            steady = float(np.mean(_stats(rows, b, c, "steady_images_per_second")))
            sd = float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0
            diff = float(np.mean(acc)) - ref_acc
            ok = abs(diff) <= max(2 * ref_sd, 0.02)
            if b != base:
                verdicts.append((name, b, ok))
            lines.append(
                f"| {name} | {b} | {np.mean(acc):.3f} | {sd:.3f} | {diff:+.3f}"
                f"{'' if ok or b == base else ' (outside noise)'} | {ips:.0f} "
                f"({ips / ref_ips:.2f}) | {steady:.0f} ({steady / ref_steady:.2f}) |"
            )
    agree = sum(ok for *_, ok in verdicts)
    lines += [
        "",
        f"{agree} of {len(verdicts)} backend/configuration pairs agree with {base} within noise.",
    ]
    out = args.out
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
    print("\n".join(lines))
    print(f"wrote {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
