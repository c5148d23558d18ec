"""Device discovery and per-worker pinning, without importing TensorFlow in the coordinator."""

from __future__ import annotations

import os
import shutil
import subprocess


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def worker_envs(n_workers: int | None, gpus: list[str]) -> list[dict[str, str]]:
    """One environment per worker: round-robin over GPUs, or CPU-only ('-1') without any."""
    if not gpus:
        return [{"CUDA_VISIBLE_DEVICES": "-1"} for _ in range(n_workers or 1)]
    count = n_workers or len(gpus)
    return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} for i in range(count)]


def configure_tensorflow() -> None:
    """In a worker: memory growth on every visible GPU, so packed workers can share one."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (ValueError, RuntimeError):
            pass
