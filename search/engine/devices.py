"""Device discovery and per-worker pinning, without importing TensorFlow in the coordinator.

``nvidia-smi`` answers what the machine has; ``CUDA_VISIBLE_DEVICES`` (if set) and ``--gpus``
narrow it. Each worker gets one GPU through its own ``CUDA_VISIBLE_DEVICES``; with several
workers per GPU each also gets a memory cap (``SEARCH_GPU_MEMORY_MB``) so they fit side by side.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

QUERY = "index,name,memory.total,compute_cap"


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str = "GPU"
    memory_mb: int = 0
    compute_capability: float = 0.0


class DeviceError(ValueError):
    """A device request that cannot be met (e.g. ``--gpus 3`` on a 2-GPU machine)."""


def parse_smi(text: str) -> list[Gpu]:
    """Rows of ``nvidia-smi --query-gpu=index,name,memory.total,compute_cap`` (csv, no units)."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        try:
            memory, cap = int(float(parts[2])), float(parts[3])
        except ValueError:
            memory, cap = 0, 0.0
        gpus.append(Gpu(parts[0], parts[1], memory, cap))
    return gpus


def _smi(runner: Callable[..., subprocess.CompletedProcess]) -> str:
    if runner is subprocess.run and shutil.which("nvidia-smi") is None:
        return ""
    try:
        return runner(
            ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def discover(
    environ: dict[str, str] | None = None,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> list[Gpu]:
    """The GPUs this process may use, honouring CUDA_VISIBLE_DEVICES (ids or an empty list)."""
    env = os.environ if environ is None else environ
    listed = parse_smi(_smi(runner))
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return listed
    ids = [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    by_index = {g.index: g for g in listed}
    return [by_index.get(i, Gpu(i)) for i in ids]


def select(gpus: list[Gpu], requested: str | None) -> list[Gpu]:
    """``--gpus 0,2``: a subset of the visible GPUs, in the order given."""
    if requested is None:
        return gpus
    by_index = {g.index: g for g in gpus}
    wanted = [r.strip() for r in requested.split(",") if r.strip()]
    missing = [r for r in wanted if r not in by_index]
    if missing:
        have = ", ".join(by_index) or "none"
        raise DeviceError(
            f"--gpus {requested}: GPU {', '.join(missing)} not visible (visible: "
            f"{have}); check nvidia-smi and CUDA_VISIBLE_DEVICES"
        )
    return [by_index[r] for r in wanted]


def worker_envs(
    n_workers: int | None,
    gpus: list[str] | list[Gpu],
    *,
    workers_per_gpu: int = 1,
    memory_mb: int | None = None,
    backend: str = "tensorflow",
) -> list[dict[str, str]]:
    """One environment per worker: round-robin over GPUs, or CPU-only ('-1') without any.

    With ``workers_per_gpu`` > 1 each worker is capped at ``memory_mb`` or, by default, 90% of
    its GPU's memory divided by the number of workers sharing it.
    """
    if workers_per_gpu < 1:
        raise DeviceError("--workers-per-gpu must be at least 1")
    cards = [g if isinstance(g, Gpu) else Gpu(g) for g in gpus]
    if not cards:
        return [
            {"CUDA_VISIBLE_DEVICES": "-1", "KERAS_BACKEND": backend} for _ in range(n_workers or 1)
        ]
    count = n_workers or len(cards) * workers_per_gpu
    envs = []
    for i in range(count):
        card = cards[i % len(cards)]
        env = {"CUDA_VISIBLE_DEVICES": card.index, "KERAS_BACKEND": backend}
        sharing = -(-count // len(cards))  # workers on the busiest card
        cap = memory_mb or (int(card.memory_mb * 0.9 / sharing) if sharing > 1 else 0)
        if cap:
            env["SEARCH_GPU_MEMORY_MB"] = str(cap)
            if card.memory_mb:
                env["SEARCH_GPU_MEMORY_FRACTION"] = f"{min(cap / card.memory_mb, 0.95):.3f}"
        envs.append(env)
    return envs


def compile_cache_env(artifact_dir: str) -> dict[str, str]:
    """Environment that lets a study's workers share compiled programs on disk, under
    ``<artifacts>/compile_cache``: JAX's persistent compilation cache (every compilation, however
    short) and TensorFlow's XLA cache (used when --xla is on). A later worker, or a resumed
    run, loads what an earlier one compiled instead of compiling it again."""
    root = Path(artifact_dir) / "compile_cache"
    flags = os.environ.get("TF_XLA_FLAGS", "")
    return {
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "TF_XLA_FLAGS": f"{flags} --tf_xla_persistent_cache_directory={root / 'xla'}".strip(),
    }


def auto_precision(gpus: list[Gpu]) -> str:
    """bfloat16 on Ampere and newer, float16 (with loss scaling) on Volta/Turing, else float32."""
    if not gpus:
        return "float32"
    cap = min(g.compute_capability for g in gpus)
    if cap >= 8.0:
        return "mixed_bfloat16"
    if cap >= 7.0 or cap == 0.0:
        return "mixed_float16"
    return "float32"


# How a TensorFlow worker without a GPU optimises its graphs (trainer.backend.graph_optimisation):
# the shortest first calls whose later steps are no slower (bench/grappler.py; docs/constants.md).
CPU_GRAPH_OPTIMISATION = "off"
# The module each backend needs, and the extra that installs it.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
BACKEND_EXTRAS = {
    "tensorflow": ".[cpu] or .[gpu]",
    "jax": ".[jax] or .[jax-gpu]",
    "torch": ".[torch]",
}


def default_backend(environ: dict[str, str] | None = None) -> str:
    """``KERAS_BACKEND`` when set, else TensorFlow."""
    env = os.environ if environ is None else environ
    return env.get("KERAS_BACKEND", "").strip() or "tensorflow"


def check_backend(name: str) -> None:
    """DeviceError unless ``name`` is a Keras backend this Python can import (looked up without
    importing it, so the coordinator stays light)."""
    import importlib.util

    if name not in BACKEND_MODULES:
        raise DeviceError(
            f"--backend {name!r} is not one of {', '.join(BACKEND_MODULES)} (KERAS_BACKEND sets "
            "the default)"
        )
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise DeviceError(
            f"--backend {name}: {BACKEND_MODULES[name]} is not installed in this Python; "
            f'install it with pip install -e "{BACKEND_EXTRAS[name]}" or choose another --backend'
        )


def configure_backend() -> None:
    """In a worker, before Keras is imported (on a GPU): the GPU memory policy of
    ``KERAS_BACKEND``.

    A cap (``SEARCH_GPU_MEMORY_MB``, with its share of the card in ``SEARCH_GPU_MEMORY_FRACTION``)
    when several workers share a GPU, else memory growth: TensorFlow's logical device limit or
    memory growth, JAX's client memory fraction or no preallocation, PyTorch's per-process
    fraction (PyTorch allocates on demand anyway). A TensorFlow worker without a GPU optimises
    its graphs as ``CPU_GRAPH_OPTIMISATION`` says."""
    name = default_backend()
    cap = int(os.environ.get("SEARCH_GPU_MEMORY_MB", "0") or 0)
    fraction = os.environ.get("SEARCH_GPU_MEMORY_FRACTION", "")
    if name == "jax":
        if cap and fraction:
            os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", fraction)
        else:
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        return
    if name == "torch":
        if cap and fraction:
            import torch

            if torch.cuda.is_available():
                torch.cuda.set_per_process_memory_fraction(float(fraction))
        return
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:  # each trial's first calls cost more than Grappler saves on CPU steps
        from trainer.backend import graph_optimisation

        graph_optimisation(CPU_GRAPH_OPTIMISATION)  # docs/grappler.md
    for gpu in gpus:
        try:
            if cap:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=cap)]
                )
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
        except (ValueError, RuntimeError) as exc:  # TensorFlow already initialised the GPU
            log.warning("could not %s on %s: %s", "cap memory" if cap else "grow memory", gpu, exc)
