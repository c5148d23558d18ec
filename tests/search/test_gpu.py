"""Device discovery and per-worker pinning on fake device lists (no GPU needed)."""

from __future__ import annotations

import os
import subprocess

import pytest

from search.engine.devices import (
    DeviceError,
    Gpu,
    auto_precision,
    discover,
    parse_smi,
    select,
    worker_envs,
)

SMI = "0, NVIDIA H100 80GB HBM3, 81559, 9.0\n1, NVIDIA H100 80GB HBM3, 81559, 9.0\n"


def fake_runner(text: str):
    def run(args, **kwargs):
        assert args[0] == "nvidia-smi"
        return subprocess.CompletedProcess(args, 0, stdout=text, stderr="")

    return run


def test_parse_and_discover_honour_cuda_visible_devices() -> None:
    gpus = parse_smi(SMI)
    assert gpus[0] == Gpu("0", "NVIDIA H100 80GB HBM3", 81559, 9.0) and len(gpus) == 2
    assert [g.index for g in discover({}, fake_runner(SMI))] == ["0", "1"]
    assert [g.index for g in discover({"CUDA_VISIBLE_DEVICES": "1"}, fake_runner(SMI))] == ["1"]
    assert discover({"CUDA_VISIBLE_DEVICES": "-1"}, fake_runner(SMI)) == []
    assert discover({}, fake_runner("")) == []


def test_one_worker_per_gpu_by_default_and_pinned() -> None:
    assert worker_envs(None, ["0", "1"]) == [
        {"CUDA_VISIBLE_DEVICES": "0", "KERAS_BACKEND": "tensorflow"},
        {"CUDA_VISIBLE_DEVICES": "1", "KERAS_BACKEND": "tensorflow"},
    ]
    assert {e["KERAS_BACKEND"] for e in worker_envs(2, ["0"], backend="jax")} == {"jax"}
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(4, ["2", "3"])] == ["2", "3", "2", "3"]


def test_workers_per_gpu_pack_with_a_memory_cap() -> None:
    envs = worker_envs(None, parse_smi(SMI), workers_per_gpu=2)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert {e["SEARCH_GPU_MEMORY_MB"] for e in envs} == {str(int(81559 * 0.9 / 2))}
    # JAX and PyTorch take the cap as a share of the card
    assert {e["SEARCH_GPU_MEMORY_FRACTION"] for e in envs} == {"0.450"}
    capped = worker_envs(None, parse_smi(SMI)[:1], workers_per_gpu=3, memory_mb=9000)
    assert [e["SEARCH_GPU_MEMORY_MB"] for e in capped] == ["9000"] * 3
    with pytest.raises(DeviceError):
        worker_envs(None, ["0"], workers_per_gpu=0)


def test_cpu_only_hides_gpus_from_workers() -> None:
    assert worker_envs(None, []) == [{"CUDA_VISIBLE_DEVICES": "-1", "KERAS_BACKEND": "tensorflow"}]
    assert len(worker_envs(3, [])) == 3


def test_gpus_flag_selects_and_rejects() -> None:
    gpus = parse_smi(SMI)
    assert [g.index for g in select(gpus, "1")] == ["1"]
    assert select(gpus, None) == gpus
    with pytest.raises(DeviceError, match="GPU 3 not visible.*0, 1"):
        select(gpus, "0,3")


def test_precision_suits_the_card() -> None:
    assert auto_precision([]) == "float32"
    assert auto_precision(parse_smi(SMI)) == "mixed_bfloat16"
    assert auto_precision([Gpu("0", "V100", 16000, 7.0)]) == "mixed_float16"
    assert auto_precision([Gpu("0", "P100", 16000, 6.0)]) == "float32"


def test_cli_refuses_gpus_that_are_not_there(tmp_path) -> None:
    from tests.search.cli import run_cli

    out = run_cli(
        "--study",
        "quick",
        "--trainer",
        "fake",
        "--gpus",
        "3",
        "--image-size",
        "32",
        "--storage",
        f"sqlite:///{tmp_path / 's.db'}",
        cwd=tmp_path,
        CUDA_VISIBLE_DEVICES="",
    )
    assert out.returncode == 2 and "GPU 3 not visible" in out.stderr


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_workers_share_compiled_programs_on_disk(tmp_path, backend) -> None:
    """The environment every worker gets makes JAX (every jit) and TensorFlow's XLA (jit_compile)
    write their compiled programs under <artifacts>/compile_cache, for the study's other workers
    and later runs."""
    import sys

    from search.engine.devices import compile_cache_env

    env = compile_cache_env(str(tmp_path))
    folder = tmp_path / "compile_cache" / ("jax" if backend == "jax" else "xla")
    assert env["JAX_COMPILATION_CACHE_DIR"].startswith(str(tmp_path))
    code = {
        "jax": "import jax, jax.numpy as jnp; jax.jit(lambda x: x * 2 + 1)(jnp.ones(3))",
        "tensorflow": "import tensorflow as tf; "
        "tf.function(lambda x: x * 2 + 1, jit_compile=True)(tf.ones(3))",
    }[backend]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert folder.is_dir() and any(folder.iterdir())


class _FakeGpu:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.mark.parametrize("shared", [True, False])
def test_the_memory_cap_is_applied_in_the_worker_on_tensorflow(monkeypatch, shared) -> None:
    """worker_envs' cap for two workers on one card reaches TensorFlow's logical device limit in
    the worker (a fake device list stands in for the card); alone, a worker grows memory."""
    import tensorflow as tf

    from search.engine.devices import configure_backend

    env = worker_envs(None, parse_smi(SMI)[:1], workers_per_gpu=2 if shared else 1)[0]
    for key in ("SEARCH_GPU_MEMORY_MB", "SEARCH_GPU_MEMORY_FRACTION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cards = [_FakeGpu("/physical_device:GPU:0")]
    limits: list[tuple[str, int | None]] = []
    grown: list[str] = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: cards)
    monkeypatch.setattr(
        tf.config,
        "set_logical_device_configuration",
        lambda gpu, configs: limits.append((gpu.name, configs[0].memory_limit)),
    )
    monkeypatch.setattr(
        tf.config.experimental, "set_memory_growth", lambda gpu, on: grown.append(gpu.name)
    )
    configure_backend()
    if shared:
        assert limits == [("/physical_device:GPU:0", int(81559 * 0.9 / 2))] and not grown
    else:
        assert grown == ["/physical_device:GPU:0"] and not limits


def test_the_memory_cap_is_applied_on_pytorch_and_jax(monkeypatch) -> None:
    import torch

    from search.engine.devices import configure_backend

    env = worker_envs(None, parse_smi(SMI)[:1], workers_per_gpu=2, backend="torch")[0]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fractions: list[float] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", fractions.append)
    configure_backend()
    assert fractions == [0.45]
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    configure_backend()

    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"


_TF_ONLY = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="Grappler is TensorFlow's graph optimiser",
)


@_TF_ONLY
@pytest.mark.parametrize("gpus", [0, 1])
def test_a_tensorflow_worker_without_a_gpu_optimises_graphs_as_configured(monkeypatch, gpus):
    """Without a GPU the worker applies CPU_GRAPH_OPTIMISATION process-wide (the shipped way);
    with one (a fake device list) it leaves TensorFlow's defaults."""
    import tensorflow as tf

    from search.engine import devices
    from trainer.backend import LEAN_OFF, graph_optimisation

    for key in ("SEARCH_GPU_MEMORY_MB", "SEARCH_GPU_MEMORY_FRACTION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    cards = [_FakeGpu("/physical_device:GPU:0")] * gpus
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: cards)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: None)
    graph_optimisation("on")
    default = tf.config.optimizer.get_experimental_options()
    try:
        devices.configure_backend()
        options = tf.config.optimizer.get_experimental_options()
        if gpus:
            assert options == default
        else:
            way = devices.CPU_GRAPH_OPTIMISATION
            assert options["disable_meta_optimizer"] is (way == "off")
            passes = False if way == "lean" else None  # None: TensorFlow's unset default
            assert all(options.get(name) is passes for name in LEAN_OFF)
            assert options != default or way == "on"
    finally:
        graph_optimisation("on")


@_TF_ONLY
def test_graph_optimisation_ways_set_exactly_their_passes_and_on_restores_the_defaults() -> None:
    import tensorflow as tf

    from trainer.backend import LEAN_OFF, graph_optimisation

    graph_optimisation("on")
    default = tf.config.optimizer.get_experimental_options()
    assert not any(name in default for name in (*LEAN_OFF, "remapping"))
    try:
        graph_optimisation("lean")
        lean = tf.config.optimizer.get_experimental_options()
        assert all(lean[name] is False for name in LEAN_OFF)
        assert "remapping" not in lean and lean["disable_meta_optimizer"] is False
        graph_optimisation("off")
        off = tf.config.optimizer.get_experimental_options()
        assert off["disable_meta_optimizer"] is True
        assert not any(name in off for name in LEAN_OFF)
    finally:
        graph_optimisation("on")
    assert tf.config.optimizer.get_experimental_options() == default
    with pytest.raises(ValueError, match="not one of"):
        graph_optimisation("fast")
