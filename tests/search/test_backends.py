"""Every Keras 3 backend through the real command line: a two-trial search on real images in
worker processes, the model exported on one backend and predicted on by the others."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from search.engine.devices import DeviceError, check_backend, default_backend
from tests.conftest import stratified_subset
from tests.search.cli import cli_env, load, run_cli

SPACE = {
    "name": "tiny",
    "description": "small CNN only, for the backend tests",
    "backbones": ["small_cnn"],
    "image_size": 32,
    "folds": 2,
    "epochs": 2,
    "weights": "none",
    "augment_levels": ["light", "robust"],
    "optimizers": ["adamw", "ranger"],
}
BACKENDS = [
    "tensorflow",
    pytest.param("jax", marks=pytest.mark.slow),
    pytest.param("torch", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def images(real_arrays, tmp_path_factory) -> Path:
    data = stratified_subset(real_arrays, 240, seed=3)
    path = tmp_path_factory.mktemp("backends") / "cells.npz"
    np.savez(path, images=data.images, labels=data.labels)
    return path


def _search(tmp_path: Path, images: Path, backend: str) -> tuple[str, Path]:
    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(SPACE))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    probe = tmp_path / "probe.jsonl"
    out = run_cli(
        *("--space-file", str(space), "--data", str(images), "--storage", url),
        *("--n-trials", "2", "--backend", backend, "--seed", "1", "--pruner", "none"),
        *("--trainer", "tests.search.backend_probe:train_trial"),
        cwd=tmp_path,
        timeout=900,
        BACKEND_PROBE=str(probe),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"(Keras on {backend})" in out.stderr
    return url, probe


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_search_runs_every_trial_on_the_chosen_backend(tmp_path, images, backend) -> None:
    url, probe = _search(tmp_path, images, backend)
    trials = load(url, "tiny").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert t.user_attrs["backend"] == backend and t.user_attrs["config"]["backend"] == backend
        assert t.value > 0.3  # it learned: 8 classes, the largest under 20% of the images
    seen = [json.loads(line) for line in probe.read_text().splitlines()]
    assert len(seen) == 2
    for s in seen:
        assert s["keras"] == backend and s["config"] == backend
        # On JAX and PyTorch no worker ever imports TensorFlow (installed here all the same).
        assert s["tensorflow_imported"] == (backend == "tensorflow")


def _predict(model: Path, images: Path, out: Path, backend: str) -> np.ndarray:
    done = subprocess.run(
        [sys.executable, "-m", "search.predict", "--model", str(model), "--data", str(images)]
        + ["--out", str(out), "-q"],
        env=cli_env(KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in rows[0] if c.startswith("p_")]
    return np.array([[float(row[c]) for c in columns] for row in rows])


@pytest.mark.slow
def test_a_model_exported_on_jax_predicts_the_same_on_every_backend(tmp_path, images) -> None:
    url, _ = _search(tmp_path, images, "jax")
    model = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, "-m", "search.export", "--study", "tiny", "--storage", url]
        + ["--out", str(model), "--backend", "jax", "-q"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((model / "config.json").read_text())["config"]["backend"] == "jax"
    probs = {
        b: _predict(model, images, tmp_path / f"{b}.csv", b) for b in ("jax", "tensorflow", "torch")
    }
    with np.load(images) as z:
        assert probs["jax"].shape == (len(z["labels"]), 8)
    for b in ("tensorflow", "torch"):
        np.testing.assert_allclose(probs[b], probs["jax"], atol=2e-3, err_msg=b)


def test_the_backend_defaults_to_keras_backend_and_a_missing_one_is_a_clear_error(
    monkeypatch,
) -> None:
    assert default_backend({}) == "tensorflow"
    assert default_backend({"KERAS_BACKEND": "jax"}) == "jax"
    with pytest.raises(DeviceError, match="not one of tensorflow, jax, torch"):
        check_backend("mxnet")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DeviceError, match=r"jax is not installed.*pip install -e \"\.\[jax\]"):
        check_backend("jax")


def test_an_unknown_keras_backend_in_the_environment_is_refused_before_anything_is_written(
    tmp_path,
) -> None:
    out = run_cli(
        *("--study", "quick", "--data", "demo", "--n-trials", "1"),
        cwd=tmp_path,
        KERAS_BACKEND="mxnet",
    )
    assert out.returncode == 2 and "not one of tensorflow, jax, torch" in out.stderr
    assert not (tmp_path / "studies.db").exists()
