"""Pretrained weights are checked before the first trial, and a backbone whose weights fail to
load mid-study stops being sampled (fake trainer, real CLI)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.search.cli import by_state, load, run_cli
from trainer.config import BACKBONES

MOBILENET = (
    "--study", "mobilenet", "--data", "demo", "--image-size", "32", "--folds", "2",
    "--epochs", "2", "--weights", "imagenet", "--pruner", "none",
)  # fmt: skip
FILES = [BACKBONES[b].weights_file for b in ("MobileNetV3Small", "MobileNetV3Large")]


def stand_in_weights(root: Path) -> Path:
    """A --weights-dir holding both MobileNetV3 file names (the fake trainer never opens them)."""
    folder = root / "weights"
    folder.mkdir()
    for name in FILES:
        (folder / name).write_bytes(b"stand-in")
    return folder


@pytest.fixture
def closed_port() -> str:
    """host:port where nothing listens: Keras' download host as an offline machine sees it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def open_port():
    """host:port that accepts connections: a machine that can download."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def test_offline_without_the_files_is_refused_before_anything_is_written(
    tmp_path: Path, closed_port: str
) -> None:
    keras_home = tmp_path / "keras"
    out = run_cli(
        *MOBILENET, "--trainer", "fake", "--n-trials", "3", cwd=tmp_path,
        KERAS_HOME=str(keras_home), SEARCH_WEIGHTS_HOST=closed_port,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
    for name in FILES:
        assert name in out.stderr
    assert str(keras_home / "models") in out.stderr  # where Keras looked
    assert "--weights-dir" in out.stderr and "--weights none" in out.stderr
    assert not (tmp_path / "studies.db").exists() and not (tmp_path / "artifacts").exists()


def test_a_weights_dir_with_the_files_lets_the_offline_study_run(
    tmp_path: Path, closed_port: str
) -> None:
    folder = stand_in_weights(tmp_path)
    out = run_cli(
        *MOBILENET, "--trainer", "fake", "--n-trials", "2", "--weights-dir", str(folder),
        cwd=tmp_path, KERAS_HOME=str(tmp_path / "keras"), SEARCH_WEIGHTS_HOST=closed_port,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert (
        len(
            by_state(load(f"sqlite:///{tmp_path / 'studies.db'}", "mobilenet"))[TrialState.COMPLETE]
        )
        == 2
    )


def test_a_backbone_whose_weights_fail_mid_study_is_left_out(
    tmp_path: Path, open_port: str
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *MOBILENET, "--trainer", "tests.search.custom_trainer:no_large_weights",
        "--n-trials", "8", "--storage", url, cwd=tmp_path,
        KERAS_HOME=str(tmp_path / "keras"), SEARCH_WEIGHTS_HOST=open_port,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(url, "mobilenet")
    failed = by_state(study)[TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["failure_kind"] == "weights_unavailable"
    later = [t for t in study.trials if t.number > failed[0].number]
    assert len(later) >= 7 and all(t.params["backbone"] == "MobileNetV3Small" for t in later)
    assert "MobileNetV3Large is left out of sampling" in out.stderr


def test_when_every_backbones_weights_fail_no_trial_is_left_running(
    tmp_path: Path, open_port: str
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *MOBILENET, "--trainer", "tests.search.custom_trainer:no_weights_at_all",
        "--n-trials", "6", "--storage", url, cwd=tmp_path,
        KERAS_HOME=str(tmp_path / "keras"), SEARCH_WEIGHTS_HOST=open_port,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-3000:]
    assert "every backbone of this space failed to load" in out.stderr
    assert "--name" in out.stderr  # --weights none needs a new study
    states = by_state(load(url, "mobilenet"))
    assert not states[TrialState.RUNNING]
    assert all(
        t.user_attrs["failure_kind"] == "weights_unavailable" for t in states[TrialState.FAIL]
    )


def test_offline_resume_names_a_new_study_for_training_from_scratch(
    tmp_path: Path, closed_port: str, open_port: str
) -> None:
    folder = stand_in_weights(tmp_path)
    first = run_cli(
        *MOBILENET, "--trainer", "fake", "--n-trials", "2", "--weights-dir", str(folder),
        cwd=tmp_path, KERAS_HOME=str(tmp_path / "keras"), SEARCH_WEIGHTS_HOST=closed_port,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(
        *MOBILENET, "--trainer", "fake", "--n-trials", "3",
        cwd=tmp_path, KERAS_HOME=str(tmp_path / "keras"), SEARCH_WEIGHTS_HOST=closed_port,
    )  # fmt: skip
    assert again.returncode == 2 and "--name NEW --weights none" in again.stderr


def test_the_probe_goes_through_an_https_proxy(monkeypatch) -> None:
    from search.engine.weights import DOWNLOAD_HOST, download_host

    monkeypatch.delenv("SEARCH_WEIGHTS_HOST", raising=False)
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert download_host() == DOWNLOAD_HOST
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.lab.example:3128")
    assert download_host() == ("proxy.lab.example", 3128)
