"""TensorFlow's graph optimiser (Grappler) on CPU: what it costs a trial's first calls, and what
it saves on every later step, side by side.

Every trial traces its training step and inference pass once; TensorFlow then optimises each
graph (Grappler) before the first run. On short CPU trials that first call is most of the
overhead (docs/overhead.md). This runs, for each way, a fresh process that builds each backbone
and measures the training step's first call and later steps (batch 32 of real images), the
inference pass's first call and later calls (one validation batch of 256) and the precise-BN
refresh's statistics pass (its first call and later ones, 128 images), the ways interleaved
``--reps`` times (each process first trains one throwaway step, so no row pays TensorFlow's own
start-up):

  on     TensorFlow's default
  lean   Grappler's rewriting passes off (trainer.backend.LEAN_OFF), its kernel fusions kept
         (remapper: Conv2D + BiasAdd + ReLU in one kernel)
  off    the meta-optimiser off (``disable_meta_optimizer``)

    python bench/grappler.py [--size 64] [--reps 3] [--steps 20] [--backbones ...] [--optimizers ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

from search.atomic import atomic_write_bytes

BACKBONES = ("small_cnn", "MobileNetV3Small", "EfficientNetV2B0")
OPTIMIZERS = ("adamw", "ranger")
WAYS = ("on", "lean", "off")


def child(way: str, size: int, steps: int, seed: int, backbones, optimizers) -> None:
    """In a fresh process: one way's figures, one JSON line per backbone and optimizer."""

    from search.data.images import resize_all
    from trainer import TrialConfig, backend
    from trainer.backbones import build_model
    from trainer.loop import BatchNormRefresh, make_phases
    from trainer.steps import forward, statistics_pass

    if not backend.TF:
        raise SystemExit("bench/grappler.py measures TensorFlow: set KERAS_BACKEND=tensorflow")
    if way != "on":  # 'on' makes no call: TensorFlow as it starts
        backend.graph_optimisation(way)
    data = real_subset(256)
    raw = data.images[:256]
    x = resize_all(raw[:32], size).astype(np.float32)
    y = np.eye(data.n_classes, dtype=np.float32)[data.labels[:32]]
    w = np.ones(len(x), np.float32)

    def timed(fn, n: int) -> tuple[float, float]:
        start = time.perf_counter()
        np.asarray(fn())
        first = time.perf_counter() - start
        later = []
        for _ in range(n):
            start = time.perf_counter()
            np.asarray(fn())
            later.append(time.perf_counter() - start)
        return first, statistics.median(later)

    def build(backbone: str, optimizer: str):
        cfg = TrialConfig(
            backbone=backbone, image_size=size, optimizer=optimizer, augment="none", seed=seed
        )
        backend.free_memory()
        built = build_model(cfg, data.n_classes, steps_per_epoch=50)
        return built, cfg, make_phases(built, cfg)["train"].step

    warm = build("small_cnn", "adam")[2]
    np.asarray(warm(x, y, w))  # TensorFlow's one-time start-up, outside every row
    for backbone in backbones:
        for optimizer in optimizers:
            built, cfg, step = build(backbone, optimizer)
            first, later = timed(lambda step=step: step(x, y, w), steps)
            infer = forward(built.model, size, raw.shape[1:], raw.dtype.name, jit=False)
            infer_first, infer_later = timed(lambda infer=infer: infer(raw), max(3, steps // 4))
            layers = BatchNormRefresh(
                built, cfg, 50, raw
            ).layers  # the layers the trainer refreshes
            stats = statistics_pass(built.model, layers, size, raw.shape[1:], raw.dtype.name)
            chunk = raw[:128]

            def refresh(stats=stats, chunk=chunk, layers=layers):
                stats(chunk)
                return layers[0].moving_mean.numpy() if layers else 0.0

            stats_first, stats_later = timed(refresh, max(3, steps // 4))
            print(
                json.dumps(
                    {
                        "backbone": backbone,
                        "optimizer": optimizer,
                        "first": first,
                        "step": later,
                        "infer_first": infer_first,
                        "infer": infer_later,
                        "stats_first": stats_first,
                        "stats": stats_later,
                    }
                ),
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "grappler.md")
    args = p.parse_args()
    backbones, optimizers = args.backbones.split(","), args.optimizers.split(",")
    if args.child:
        child(args.child, args.size, args.steps, args.seed, backbones, optimizers)
        return
    got: dict[tuple[str, str, str], list[dict]] = {}
    for rep in range(args.reps):
        for way in WAYS:
            cmd = [sys.executable, __file__, "--child", way, "--size", str(args.size)]
            cmd += ["--steps", str(args.steps), "--seed", str(rep)]
            cmd += ["--backbones", args.backbones, "--optimizers", args.optimizers]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"{way} failed:\n{proc.stderr[-3000:]}")
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    got.setdefault((r["backbone"], r["optimizer"], way), []).append(r)
            print(f"rep {rep} {way} done", flush=True)
    keys = ("first", "step", "infer_first", "infer", "stats_first", "stats")
    med = {k: {f: statistics.median(r[f] for r in v) for f in keys} for k, v in got.items()}
    rows = []
    for backbone in backbones:
        for optimizer in optimizers:
            m = {way: med[(backbone, optimizer, way)] for way in WAYS}
            rows.append((backbone, optimizer, m))

    def cell(m: dict, f: str, scale: float = 1.0, fmt: str = ".2f") -> str:
        return " / ".join(f"{scale * m[way][f]:{fmt}}" for way in WAYS)

    def ratio(way: str, f: str) -> str:
        r = [m[way][f] / m["on"][f] for _, _, m in rows]
        return f"{statistics.median(r):.2f} ({min(r):.2f}..{max(r):.2f})"

    ways = " / ".join(WAYS)
    lines = [
        "# TensorFlow's graph optimiser on CPU: first calls against later steps",
        "",
        f"Command: `python bench/grappler.py --size {args.size} --reps {args.reps} --steps "
        f"{args.steps} --backbones {args.backbones} --optimizers {args.optimizers}` (weights=None, real images; each cell the median of {args.reps} fresh "
        "processes per way, the ways interleaved). Ways: `on` is TensorFlow's default, `lean` "
        "turns Grappler's rewriting passes off (`trainer.backend.LEAN_OFF`) and keeps its kernel "
        "fusions (remapper), `off` turns the meta-optimiser off.",
        "",
        f"Machine: {machine()}",
        "",
        f"| backbone | optimizer | step first call s ({ways}) | later step ms ({ways}) | "
        f"inference first call s ({ways}) | inference of 256 ms ({ways}) | "
        f"statistics pass first call s ({ways}) | statistics pass of 128 ms ({ways}) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backbone, optimizer, m in rows:
        lines.append(
            f"| {backbone} | {optimizer} | {cell(m, 'first')} | {cell(m, 'step', 1e3, '.1f')} | "
            f"{cell(m, 'infer_first')} | {cell(m, 'infer', 1e3, '.1f')} | "
            f"{cell(m, 'stats_first')} | {cell(m, 'stats', 1e3, '.1f')} |"
        )
    lines += ["", "Ratio to `on`, median (min..max) over the rows:", ""]
    lines += [
        "| way | step first call | later step | inference first call | inference | "
        "statistics first call | statistics pass |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for way in WAYS[1:]:
        lines.append(
            f"| {way} | {ratio(way, 'first')} | {ratio(way, 'step')} | "
            f"{ratio(way, 'infer_first')} | {ratio(way, 'infer')} | "
            f"{ratio(way, 'stats_first')} | {ratio(way, 'stats')} |"
        )
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(args.out, text.encode())
    atomic_write_bytes(
        args.out.with_suffix(".json"),
        json.dumps({f"{b}|{o}|{w}": v for (b, o, w), v in got.items()}, indent=1).encode(),
    )
    print(text)


if __name__ == "__main__":
    main()
