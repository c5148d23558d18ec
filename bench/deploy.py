"""Deploy: the accuracy-latency front of a --budget study, and its model in every portable format,
with 8-bit weights too, scored on held-out real cells and timed on this machine's CPU.

Splits the real blood cells into a stratified held-out quarter (``--split-seed``; 39 by default,
used by no other benchmark: a development split, not issue 40's scored-once one) and the rest,
runs the README's command on the rest as a multi-objective study (``python -m search.run --study
quick --objective accuracy,latency --budget B``), then:

- exports every point of the study's Pareto front (``search.export --trial N``, at most
  ``--front`` of them, spread over it) and scores each on the held-out quarter, clean and under
  the seeded corruptions of ``trainer/corruptions.py``, with its CPU latency with and without the
  test-time views (``trainer.portable.measure_cost``: median of warm runs);
- writes the --budget model (the front's most accurate point) as ONNX, LiteRT and both with int8
  weights (``trainer.portable``, what ``search.export --format`` calls) and scores each file
  through its own runtime the same way.

    python bench/deploy.py [--budget 30m] [--split-seed 39] [--front 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, real_subset, save_npz, stratified_split  # noqa: I001

from search.atomic import atomic_write_bytes

FORMATS = ("keras", "onnx", "litert", "onnx-int8", "litert-int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="30m")
    p.add_argument("--split-seed", type=int, default=39)
    p.add_argument("--front", type=int, default=5, help="front points exported at most")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "deploy.md")
    args = p.parse_args()

    from trainer import portable

    data = real_subset()
    rest, held = stratified_split(data.labels, 0.25, args.split_seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_npz(data.subset(rest), work / "train.npz")
        command = [sys.executable, "-m", "search.run", "--study", "quick", "--data",
                   str(work / "train.npz"), "--budget", args.budget, "--objective",
                   "accuracy,latency", "-q"]  # fmt: skip
        searched = _run(command, work)
        folder = work / "models" / "quick"
        config, model, base, images, labels, corrupted = _open(folder, data, held, args.split_seed)
        written = portable.write_formats(model, folder, FORMATS)
        runners = portable.file_runners(model, written)
        clean = portable.agreement(runners, images.astype(np.float32), labels)
        shifted = portable.agreement(runners, corrupted.astype(np.float32), labels)
        cost = portable.measure_cost(model, base, folder, written)
        front, counts = _front(work, data, held, args, config)
    rows = []
    for fmt in FORMATS:
        name = portable.FILES[fmt]
        rows.append(
            {
                "format": fmt,
                "file": name,
                "bytes": cost["files_bytes"][name],
                "clean": clean[fmt]["accuracy"],
                "corrupted": shifted[fmt]["accuracy"],
                "same_class_as_keras": clean[fmt]["same_class_as_keras"],
                **cost["latency_ms"][fmt],
            }
        )
    result = {
        "command": f"python bench/deploy.py --budget {args.budget} --split-seed {args.split_seed}",
        "machine": machine(),
        "search_seconds": round(searched, 1),
        "held_out": int(len(held)),
        "model": {k: config["config"].get(k) for k in ("backbone", "augment", "image_size")},
        "views": config.get("tta"),
        "params": cost["params"],
        "without_views": cost["latency_ms_without_views"],
        "measured_on": cost["measured_on"],
        "rows": rows,
        "front": front,
        "study": counts,
    }
    _write(args.out, result)


def _open(folder: Path, data, held: np.ndarray, seed: int) -> tuple:
    """An exported folder, loaded: its config, its model and the model inside its views, and
    the held-out images at its size with their labels and, seeded, their corrupted copies."""
    import keras

    from search.data.images import resize_all
    from trainer.corruptions import corrupt_each

    config = json.loads((folder / "config.json").read_text())
    model = keras.models.load_model(folder / "model.keras")
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    base = inner[0] if config.get("tta", "none") != "none" and inner else model
    images = resize_all(data.images[held], int(config["image_size"]))
    corrupted, _ = corrupt_each(
        images, seed=seed, symmetry=config.get("symmetry", "dihedral"),
        colour=config.get("colour", "shift"),
    )  # fmt: skip
    return config, model, base, images, data.labels[held], corrupted


def _run(command: list[str], work: Path) -> float:
    """Run one of the project's commands in ``work``; its seconds, or exit with its stderr."""
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=work, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode != 0:
        name = command[2]
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _front(work: Path, data, held, args, final: dict) -> tuple[list[dict], dict]:
    """Each exported point of the study's front, scored on the held-out quarter and timed."""
    import optuna

    from storage.records import pareto_front, score
    from trainer import portable

    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{work / 'studies.db'}")
    front = pareto_front(study)
    counts = _study_counts(study, len(front))
    if len(front) > args.front:  # spread: the ends and evenly between
        picks = np.linspace(0, len(front) - 1, args.front).round().astype(int)
        front = [front[i] for i in sorted(set(picks.tolist()))]
    rows = []
    for t in front:
        out = work / f"front{t.number}"
        command = [sys.executable, "-m", "search.export", "--study", "quick", "--trial",
                   str(t.number), "--out", str(out), "-q"]  # fmt: skip
        seconds = _run(command, work)
        config, model, base, images, labels, corrupted = _open(out, data, held, args.split_seed)
        runner = {"keras": portable.keras_runner(model)}
        clean = portable.agreement(runner, images.astype(np.float32), labels)["keras"]
        shifted = portable.agreement(runner, corrupted.astype(np.float32), labels)["keras"]
        cost = portable.measure_cost(model, base, out, {})
        without = cost["latency_ms_without_views"]
        rows.append(
            {
                "trial": t.number,
                "budget_model": t.number == final["trial"],
                "backbone": config["config"]["backbone"],
                "head_width": config["config"]["head_width"],
                "cv_score": float(score(t) or 0.0),
                "trial_latency_ms": float(t.user_attrs["latency_ms"]),
                "params": cost["params"],
                "views": config.get("tta"),
                "clean": clean["accuracy"],
                "corrupted": shifted["accuracy"],
                "single_image_ms": cost["latency_ms"]["keras"]["single_image_ms"],
                "single_image_ms_without_views": (
                    without["single_image_ms"]
                    if isinstance(without, dict)
                    else cost["latency_ms"]["keras"]["single_image_ms"]
                ),
                "export_seconds": round(seconds, 1),
            }
        )
    return rows, counts


def _study_counts(study, on_front: int) -> dict:
    """How many complete trials each backbone had, with its best CV score and lowest latency."""
    from optuna.trial import TrialState

    from storage.records import score

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    per: dict[str, dict] = {}
    for t in trials:
        name = t.params.get("backbone", "?")
        row = per.setdefault(name, {"complete": 0, "best_cv": 0.0, "fastest_ms": float("inf")})
        row["complete"] += 1
        row["best_cv"] = max(row["best_cv"], float(score(t) or 0.0))
        row["fastest_ms"] = min(row["fastest_ms"], float(t.user_attrs.get("latency_ms", "inf")))
    return {"complete": len(trials), "on_front": on_front, "backbones": per}


def _write(out: Path, r: dict) -> None:
    keras_bytes = r["rows"][0]["bytes"]
    lines = [
        "# Deploy: the accuracy-latency front, and the --budget model in portable files",
        "",
        f"Command: `{r['command']}`. Machine: {r['machine']}.",
        "",
        "## The Pareto front of the study",
        "",
        "The study below (`--objective accuracy,latency`) measured each trial's single-image "
        "latency before it trained; its Pareto front (complete trials no other beats on "
        "both), each point exported with `search.export --trial N` and scored on the held-out "
        "quarter. CV score and trial latency are the study's (search size, no views); the rest "
        "is the exported model's (views as exported, Keras on this CPU). `search.export` "
        "retrains a trial's own recipe (its augmentation, its best epoch count), not the "
        "--budget model's final recipe below (`robust`, epochs filling the budget): that is why "
        "the front's corrupted accuracy is lower than the --budget model's.",
    ]
    counts = r.get("study")
    if counts:
        lines += [
            "",
            f"{counts['on_front']} of the study's {counts['complete']} complete trials are on the "
            "front. Per backbone: "
            + "; ".join(
                f"{name} {c['complete']} complete, best CV {c['best_cv']:.4f}, fastest "
                f"{c['fastest_ms']:.2f} ms"
                for name, c in counts["backbones"].items()
            )
            + ".",
        ]
    lines += [
        "",
        "| trial | backbone | head | params | CV score | trial latency, ms | clean | corrupted "
        "| one image, ms (views) | one image, ms (no views) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in r.get("front", []):
        mark = " (the --budget model's trial)" if f["budget_model"] else ""
        lines.append(
            f"| {f['trial']}{mark} | {f['backbone']} | {f['head_width']} | {f['params']:,} | "
            f"{f['cv_score']:.4f} | {f['trial_latency_ms']:.2f} | {f['clean']:.4f} | "
            f"{f['corrupted']:.4f} | {f['single_image_ms']:.2f} ({f['views']}) | "
            f"{f['single_image_ms_without_views']:.2f} |"
        )
    lines += [
        "",
        "## The --budget model in every format",
        "",
        f"The README's command (`search.run --study quick --budget`) ran on the real cells "
        f"outside a stratified held-out quarter ({r['held_out']} cells, split seed in the "
        f"command; a development split) in {r['search_seconds'] / 60:.1f} min. Its model: "
        f"{r['model']['backbone']} at {r['model']['image_size']} px, {r['model']['augment']}, "
        f"test-time views `{r['views']}`, {r['params']:,} parameters. Each file is run by its "
        "own runtime (Keras, ONNX Runtime, the LiteRT interpreter) on the held-out quarter, "
        "clean and with each cell under one seeded corruption. Latency: "
        f"{r['measured_on']}.",
        "",
        "| format | file | size | vs model.keras | clean | corrupted | same class as keras | "
        "one image, ms | batch of 8, ms per image |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['format']} | {row['file']} | {row['bytes'] / 1e6:.2f} MB | "
            f"{row['bytes'] / keras_bytes:.2f}x | {row['clean']:.4f} | {row['corrupted']:.4f} | "
            f"{row['same_class_as_keras']:.4f} | {row['single_image_ms']:.2f} | "
            f"{row['per_image_in_batch_ms']:.2f} |"
        )
    w = r["without_views"]
    if isinstance(w, dict):
        lines += [
            "",
            f"Without the test-time views (the same weights, through Keras): one image "
            f"{w['single_image_ms']:.2f} ms, {w['per_image_in_batch_ms']:.2f} ms per image in a "
            "batch of 8.",
        ]
    lines += ["", "Not measured here: other machines' latency.", ""]
    atomic_write_bytes(out, "\n".join(lines).encode())
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(r, indent=1).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
