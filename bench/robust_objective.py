"""What does ``--metric robust_accuracy`` buy? Clean and corrupted held-out accuracy, side by side.

Runs the same small search twice on real blood cells (same seed, same space: the small CNN from
scratch over augmentation levels and learning rates), once optimising accuracy and once
robust_accuracy; exports each study's best trial (retrained on all study data) and evaluates
both on the same held-out images, clean and under the seeded corruptions of ``search.predict
--corruptions``. Writes docs/robust_objective.md.

    python bench/robust_objective.py [--train 1200] [--test 600] [--trials 6] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REAL, ROOT, machine  # noqa: I001


def run(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", type=int, default=1200)
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="robust-bench-"))
    with np.load(REAL, allow_pickle=False) as z:
        images, labels, names = z["images"], z["labels"], z["class_names"]
    rng = np.random.default_rng(7)
    order = rng.permutation(len(labels))
    train, test = order[: args.train], order[args.train : args.train + args.test]
    np.savez(work / "train.npz", images=images[train], labels=labels[train], class_names=names)
    np.savez(work / "test.npz", images=images[test], labels=labels[test], class_names=names)
    space = {
        "name": "robustbench",
        "description": "small CNN, augmentation x learning rate",
        "backbones": ["small_cnn"],
        "image_size": args.size,
        "folds": 2,
        "epochs": args.epochs,
        "n_trials": args.trials,
        "weights": "none",
        "augment_levels": ["none", "light", "moderate", "heavy"],
        "optimizers": ["adamw"],
        "learning_rate": [1e-3, 4e-3],
        "head_widths": [0],
        "batch_sizes": [32],
        "label_smoothing": [0.0, 0.1],
        "patience": 3,
    }
    (work / "space.json").write_text(json.dumps(space))
    rows = {}
    for metric in ("accuracy", "robust_accuracy"):
        start = time.perf_counter()
        url = f"sqlite:///{work / (metric + '.db')}"
        run(
            "search.run",
            "--space-file",
            str(work / "space.json"),
            "--data",
            str(work / "train.npz"),
            "--storage",
            url,
            "--metric",
            metric,
            "--pruner",
            "none",
            "--seed",
            "0",
            "-q",
            cwd=work,
        )
        out = work / f"export_{metric}"
        run(
            "search.export",
            "--study",
            "robustbench",
            "--storage",
            url,
            "--out",
            str(out),
            "-q",
            cwd=work,
        )
        run(
            "search.predict",
            "--model",
            str(out),
            "--data",
            str(work / "test.npz"),
            "--corruptions",
            "--out",
            str(work / f"pred_{metric}.csv"),
            "--metrics-out",
            str(work / f"metrics_{metric}.json"),
            "-q",
            cwd=work,
        )
        metrics = json.loads((work / f"metrics_{metric}.json").read_text())
        config = json.loads((out / "config.json").read_text())["config"]
        rows[metric] = (metrics, config, time.perf_counter() - start)
        print(
            f"{metric:16s} best: augment {config['augment']}, lr {config['learning_rate']:.2g}"
            f"; held-out clean {metrics['accuracy']:.3f}, corrupted "
            f"{metrics['corruptions']['mean_accuracy']:.3f}",
            flush=True,
        )
    a, r = rows["accuracy"][0], rows["robust_accuracy"][0]
    print(
        f"robust/accuracy objective: clean {r['accuracy'] / a['accuracy']:.3f}, corrupted "
        f"{r['corruptions']['mean_accuracy'] / a['corruptions']['mean_accuracy']:.3f}"
    )
    names_c = (
        list(a["corruptions"]["per_corruption"])
        if "per_corruption" in a["corruptions"]
        else [k for k in a["corruptions"] if isinstance(a["corruptions"][k], dict)]
    )
    lines = [
        "# What the robust objective buys (issue 6, item 6)",
        "",
        f"Command: `python bench/robust_objective.py --train {args.train} --test {args.test} "
        f"--trials {args.trials} --epochs {args.epochs} --size {args.size}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Two searches on the same {args.train} real images (same seed, same space: small CNN "
        f"from scratch at {args.size}px, augmentation none/light/moderate/heavy x learning rate x "
        f"label smoothing, {args.trials} trials, 2 folds, {args.epochs} epochs), one optimising "
        "`accuracy`, one `robust_accuracy` (mean of clean and corrupted validation accuracy). "
        f"Each study's best trial is retrained on all {args.train} images by `search.export` "
        f"and scored by `search.predict --corruptions` on {args.test} held-out real images.",
        "",
        "| objective | chosen augment | lr | held-out clean accuracy | mean corrupted accuracy |"
        " minutes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for metric, (m, cfg, sec) in rows.items():
        lines.append(
            f"| {metric} | {cfg['augment']} | {cfg['learning_rate']:.2g} | "
            f"{m['accuracy']:.3f} | {m['corruptions']['mean_accuracy']:.3f} | "
            f"{sec / 60:.1f} |"
        )
    lines += [
        "",
        "Per corruption (held-out accuracy):",
        "",
        "| objective | " + " | ".join(names_c) + " |",
        "|---|" + "---:|" * len(names_c),
    ]
    for metric, (m, _, _) in rows.items():
        per = m["corruptions"].get("per_corruption", m["corruptions"])
        lines.append(
            f"| {metric} | " + " | ".join(f"{per[n]['accuracy']:.3f}" for n in names_c) + " |"
        )
    (ROOT / "docs" / "robust_objective.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
