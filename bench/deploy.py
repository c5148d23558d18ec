"""Deploy: the --budget model in every portable format, with 8-bit weights too, scored on held-out
real cells and timed on this machine's CPU.

Splits the real blood cells into a stratified held-out quarter (``--split-seed``; 39 by default,
used by no other benchmark: a development split, not issue 40's scored-once one) and the rest,
runs the README's command on the rest (``python -m search.run --study quick --budget B``), then
writes its exported model as ONNX, LiteRT and both with int8 weights (``trainer.portable``, what
``search.export --format`` calls) and scores each file through its own runtime on the held-out
quarter, clean and under the seeded corruptions of ``trainer/corruptions.py``, with the latency
``trainer.portable.measure_cost`` measures (median of warm runs, one image and a batch of 8).

Not here: the accuracy-latency Pareto front of a multi-objective study (issue 39 item 3 is not
built).

    python bench/deploy.py [--budget 10m] [--split-seed 39]
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
    p.add_argument("--budget", default="10m")
    p.add_argument("--split-seed", type=int, default=39)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "deploy.md")
    args = p.parse_args()
    import keras

    from search.data.images import resize_all
    from trainer import portable
    from trainer.corruptions import corrupt_each

    data = real_subset()
    rest, held = stratified_split(data.labels, 0.25, args.split_seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_npz(data.subset(rest), work / "train.npz")
        command = [sys.executable, "-m", "search.run", "--study", "quick", "--data",
                   str(work / "train.npz"), "--budget", args.budget, "-q"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(
            command, cwd=work, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"search.run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        searched = time.perf_counter() - start
        folder = work / "models" / "quick"
        config = json.loads((folder / "config.json").read_text())
        model = keras.models.load_model(folder / "model.keras")
        inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        base = inner[0] if config.get("tta", "none") != "none" and inner else model
        written = portable.write_formats(model, folder, FORMATS)
        size = int(config["image_size"])
        images = resize_all(data.images[held], size)
        labels = data.labels[held]
        corrupted, _ = corrupt_each(
            images, seed=args.split_seed, symmetry=config.get("symmetry", "dihedral"),
            colour=config.get("colour", "shift"),
        )  # fmt: skip
        runners = portable.file_runners(model, written)
        clean = portable.agreement(runners, images.astype(np.float32), labels)
        shifted = portable.agreement(runners, corrupted.astype(np.float32), labels)
        cost = portable.measure_cost(model, base, folder, written)
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
    }
    _write(args.out, result)


def _write(out: Path, r: dict) -> None:
    keras_bytes = r["rows"][0]["bytes"]
    lines = [
        "# Deploy: the --budget model in portable files, int8 included",
        "",
        f"Command: `{r['command']}`. Machine: {r['machine']}.",
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
    lines += [
        "",
        "Not measured here: the accuracy-latency Pareto front of a multi-objective study "
        "(issue 39 item 3 is not built), and other machines' latency.",
        "",
    ]
    atomic_write_bytes(out, "\n".join(lines).encode())
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(r, indent=1).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
