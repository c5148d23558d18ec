"""A trial's first training step, the update as it was against as it is, side by side.

Every trial builds its model and traces its training step once (folds reuse it); that first call
(Python tracing, then Grappler's graph optimisation) is most of a short trial's overhead
(docs/overhead.md). Two changes shrank the traced update:

- ``adam``/``adamw``: ``trainer.steps`` updates a plain Keras ``Adam``/``AdamW`` with
  TensorFlow's fused ``ResourceApplyAdam`` kernel (``fused_adam``; way ``fused``) instead of
  Keras 3's per-variable graph (way ``keras``);
- ``ranger``: ``trainer.optimizers.Ranger`` computes RAdam's step factors once a step and syncs
  Lookahead for every variable in one branch (way ``shared``) instead of per variable (way
  ``per_variable``, the class before 2026-12-07, kept here as ``PerVariableRanger``).

This builds each backbone afresh for each way, interleaved, ``--reps`` times, and reports the
training step's graph size, its first call and the median of the next ``--steps`` calls (batch
32 of real images at ``--size`` px, weights=None).

    python bench/step_tracing.py [--size 48] [--reps 3] [--steps 20] [--optimizers adam,ranger]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import keras
import numpy as np
from common import ROOT, machine, real_subset  # noqa: I001

import trainer.loop
from search.atomic import atomic_write_bytes
from search.data.images import resize_all
from trainer import TrialConfig
from trainer.backbones import build_model
from trainer.loop import make_phases
from trainer.optimizers import Ranger

BACKBONES = ("small_cnn", "MobileNetV3Small", "EfficientNetV2B0")
OPTIMIZERS = ("adam", "adamw", "ranger")
# optimizer -> (the way before, the way now)
WAYS = {
    "adam": ("keras", "fused"),
    "adamw": ("keras", "fused"),
    "ranger": ("per_variable", "shared"),
}


class PerVariableRanger(Ranger):
    """Ranger before 2026-12-07: the step factors and a Lookahead branch in each variable's
    update (``update_step`` does both when no shared factors are set)."""

    def _backend_apply_gradients(self, grads, variables) -> None:
        keras.optimizers.Optimizer._backend_apply_gradients(self, grads, variables)


def _per_variable_optimizer(name: str, lr: float, weight_decay: float):
    from trainer.optimizers import make_optimizer

    made = make_optimizer(name, lr, weight_decay)
    if isinstance(made, Ranger):
        return PerVariableRanger.from_config(made.get_config())
    return made


def one(backbone: str, optimizer: str, way: str, x, y, w, steps: int, seed: int) -> dict:
    cfg = TrialConfig(
        backbone=backbone, image_size=x.shape[1], optimizer=optimizer, augment="none", seed=seed
    )
    built = build_model(cfg, y.shape[1], steps_per_epoch=50)
    original = trainer.loop.make_optimizer
    if way == "per_variable":
        trainer.loop.make_optimizer = _per_variable_optimizer
    try:
        step = make_phases(built, cfg)["train"].step
    finally:
        trainer.loop.make_optimizer = original
    if way == "keras":
        step.fused = None  # read when the step is traced, on its first call
    elif way == "fused" and step.fused is None:
        raise SystemExit(f"{optimizer} did not get the fused update")
    start = time.perf_counter()
    float(step(x, y, w))
    first = time.perf_counter() - start
    later = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(x, y, w))
        later.append(time.perf_counter() - start)
    ops = len(step._compiled.get_concrete_function().graph.get_operations())
    return {"first": first, "step": statistics.median(later), "ops": ops}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "step_tracing.md")
    args = p.parse_args()
    optimizers = args.optimizers.split(",")
    unknown = [o for o in optimizers if o not in WAYS]
    if unknown:
        raise SystemExit(f"unknown optimizers {unknown}; choose from {', '.join(WAYS)}")
    data = real_subset(32)
    x = resize_all(data.images, args.size).astype(np.float32)
    y = np.eye(data.n_classes, dtype=np.float32)[data.labels]
    w = np.ones(len(x), np.float32)
    rows = []
    for backbone in args.backbones.split(","):
        for optimizer in optimizers:
            ways = WAYS[optimizer]
            got: dict[str, list[dict]] = {way: [] for way in ways}
            for rep in range(args.reps):
                for way in ways:
                    got[way].append(one(backbone, optimizer, way, x, y, w, args.steps, rep))
            med = {
                way: {k: statistics.median(r[k] for r in got[way]) for k in got[way][0]}
                for way in ways
            }
            before, now = (med[way] for way in ways)
            rows.append((backbone, optimizer, ways, before, now))
            print(
                f"{backbone} {optimizer} ({ways[0]} -> {ways[1]}): ops {before['ops']:.0f} -> "
                f"{now['ops']:.0f}, first call {before['first']:.2f} -> {now['first']:.2f} s, "
                f"step {1e3 * before['step']:.1f} -> {1e3 * now['step']:.1f} ms",
                flush=True,
            )

    def summary(pair: tuple[str, str]) -> str:
        picked = [(b, n) for _, _, ways, b, n in rows if ways == pair]
        first = [n["first"] / b["first"] for b, n in picked]
        step = [n["step"] / b["step"] for b, n in picked]
        return (
            f"{pair[1]} / {pair[0]}, median over the {len(picked)} rows: first call "
            f"{statistics.median(first):.2f} ({min(first):.2f}..{max(first):.2f}), later step "
            f"{statistics.median(step):.2f} ({min(step):.2f}..{max(step):.2f})"
        )

    pairs = list(dict.fromkeys(ways for _, _, ways, _, _ in rows))
    lines = [
        "# The training step's first call: the update as it was against as it is",
        "",
        f"Command: `python bench/step_tracing.py --size {args.size} --reps {args.reps} --steps "
        f"{args.steps} --optimizers {args.optimizers} --backbones {args.backbones}` (one batch "
        f"of 32 real images, weights=None; each row the median of {args.reps} fresh builds per "
        "way, the ways interleaved). The first call traces the step and optimises its graph; "
        "every trial pays it once. Adam and AdamW: Keras's per-variable update (`keras`) "
        "against TensorFlow's fused kernel (`fused`); Ranger: its step factors and Lookahead "
        "branch per variable (`per_variable`, before 2026-12-07) against once a step "
        "(`shared`).",
        "",
        f"Machine: {machine()}",
        "",
        "| backbone | optimizer | ways | graph ops | first call s | later step ms |",
        "|---|---|---|---:|---:|---:|",
    ]
    for backbone, optimizer, ways, b, n in rows:
        lines.append(
            f"| {backbone} | {optimizer} | {ways[0]} / {ways[1]} | {b['ops']:.0f} / "
            f"{n['ops']:.0f} | {b['first']:.2f} / {n['first']:.2f} | {1e3 * b['step']:.1f} / "
            f"{1e3 * n['step']:.1f} |"
        )
    lines += [""] + [f"- {summary(pair)}" for pair in pairs] + [""]
    atomic_write_bytes(args.out, "\n".join(lines).encode())
    print("\n".join(summary(pair) for pair in pairs))


if __name__ == "__main__":
    main()
