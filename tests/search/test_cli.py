"""The real command line: help, bad input, and a real 3-trial search on real images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from tests.conftest import stratified_subset
from tests.search.cli import FAKE_QUICK, ROOT, by_state, cli_env, load, run_cli, snapshot
from trainer.folds import decode_folds


def test_help_is_fast_because_it_imports_no_tensorflow() -> None:
    code = (
        "import sys; from search.run import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tf imported'\n"
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for flag in (
        "--study",
        "--data",
        "--storage",
        "--n-trials",
        "--timeout",
        "--folds",
        "--epochs",
        "--workers",
        "--seed",
        "--pruner",
        "--sampler",
        "--weights",
        "--metric",
        "--verbose",
        "--quiet",
    ):
        assert flag in out.stdout


def test_unknown_study_lists_the_valid_ones(tmp_path: Path) -> None:
    out = run_cli("--study", "resnet", cwd=tmp_path)
    assert out.returncode == 2
    assert "unknown study 'resnet'" in out.stderr and "quick, mobilenet" in out.stderr
    assert not (tmp_path / "studies.db").exists()


def test_missing_data_file_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    out = run_cli("--study", "quick", "--data", str(tmp_path / "nope.npz"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "nope.npz" in out.stderr
    assert not load_or_none(f"sqlite:///{tmp_path / 'studies.db'}", "quick")


def load_or_none(url: str, name: str):
    try:
        return load(url, name)
    except KeyError:
        return None


@pytest.fixture(scope="module")
def real_npz(real_arrays, tmp_path_factory) -> Path:
    ds = stratified_subset(real_arrays, 240, seed=3)
    path = tmp_path_factory.mktemp("data") / "cells.npz"
    np.savez(path, images=ds.images, labels=ds.labels, class_names=np.array(ds.class_names))
    return path


def test_quick_study_end_to_end_on_real_images(real_npz: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        "--study",
        "quick",
        "--data",
        str(real_npz),
        "--storage",
        url,
        "--n-trials",
        "3",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--pruner",
        "none",
        cwd=tmp_path,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(url, "quick")
    states = by_state(study)
    assert len(states[TrialState.COMPLETE]) == 3 and not states[TrialState.RUNNING]
    attrs = study.user_attrs
    with np.load(real_npz) as z:
        n = len(z["labels"])
    assert attrs["folds"] == 3 and attrs["epochs"] == 2 and attrs["n_images"] == n
    assert len(attrs["fold_of"]) == n and len(attrs["data_fingerprint"]) == 64
    for t in states[TrialState.COMPLETE]:
        assert len(t.user_attrs["fold_scores"]) == 3
        assert t.value == pytest.approx(np.mean(t.user_attrs["fold_scores"]))
        fold0 = t.user_attrs["fold_0"]
        assert len(fold0["epochs"]) >= 1 and {"accuracy", "macro_f1", "loss"} <= set(
            fold0["epochs"][0]
        )
        assert t.user_attrs["device"] == "CPU" and t.user_attrs["config"]["seed"] == 0
        assert set(t.intermediate_values) <= set(range(6))
    system = study._storage.get_study_system_attrs(study._study_id)
    notes = "".join(str(v) for k, v in system.items() if k.startswith("dashboard:"))
    assert "| fold | best epoch |" in notes and "most confused with" in notes
    assert "optuna-dashboard" in out.stdout and "--host 127.0.0.1" in out.stdout
    assert "trial" in out.stdout and "accuracy" in out.stdout  # the leaderboard

    # Resuming with different data is refused and changes nothing.
    before = snapshot(url, "quick")
    other = tmp_path / "other.npz"
    with np.load(real_npz) as z:
        np.savez(
            other, images=z["images"][::-1], labels=z["labels"][::-1], class_names=z["class_names"]
        )
    again = run_cli(
        "--study",
        "quick",
        "--data",
        str(other),
        "--storage",
        url,
        "--n-trials",
        "4",
        "--epochs",
        "2",
        "--image-size",
        "32",
        cwd=tmp_path,
    )
    assert again.returncode == 2 and "different data" in again.stderr
    assert snapshot(url, "quick") == before


def test_eleven_folds_train_exactly_those_folds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "2", "--folds", "11", "--pruner", "none",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(url, "quick")
    stored = decode_folds(study.user_attrs["fold_of"])
    assert len(stored) == 11
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert len(t.user_attrs["fold_scores"]) == 11
        stored_folds = {k for k in t.user_attrs if k.startswith("fold_") and k[5:].isdigit()}
        assert stored_folds == {f"fold_{k}" for k in range(11)}
        assert max(t.intermediate_values) == 11 * 4 - 1  # 11 folds x 4 epochs, no more
        # Each fold validated on exactly the images the study stored for it.
        for k, fold in enumerate(stored):
            confusion = np.array(t.user_attrs[f"fold_{k}"]["confusion"])
            assert confusion.sum() == len(fold.val)


def test_resume_without_metric_keeps_the_studys_metric(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    first = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "2", "--metric", "macro_f1", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    study = load(url, "quick")
    assert study.user_attrs["metric"] == "macro_f1" and len(study.trials) == 3
    assert "macro_f1" in again.stdout  # the leaderboard's column
    # Every complete trial is scored by the mean of its folds' best macro F1, not accuracy.
    from storage.records import fold_results

    for t in by_state(study)[TrialState.COMPLETE]:
        folds = fold_results(t)
        assert t.value == pytest.approx(np.mean([f.best.macro_f1 for f in folds]))
        assert t.value != pytest.approx(np.mean([f.best.accuracy for f in folds]))
    other = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "4", "--metric", "accuracy", cwd=tmp_path
    )
    assert other.returncode == 2 and "--metric macro_f1" in other.stderr


def test_a_resume_with_a_changed_fixed_setting_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    fixed = ("--folds", "3", "--epochs", "2", "--weights", "none")
    made = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "1", *fixed, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    before = snapshot(url, "quick")
    for flag, changed, said in (
        ("--folds", "4", "--folds 3, not 4"),
        ("--epochs", "3", "--epochs 2, not 3"),
        ("--weights", "imagenet", "--weights none, not imagenet"),
    ):
        out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "2", flag, changed, cwd=tmp_path)
        assert out.returncode == 2 and said in out.stderr, out.stderr[-2000:]
        assert "use a new --name" in out.stderr
        assert snapshot(url, "quick") == before  # nothing written


def test_log_lines_say_what_happened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # the sampler's own trials, screened (the portfolio's are not)
    out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "12", "--no-portfolio", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stderr
    assert "pruned: -" not in log and ": -" not in log
    assert "small_cnn weights none, " in log
    screened = [line for line in log.splitlines() if " screened" in line]
    assert screened and all("promoted" in line for line in screened)
    study = load(url, "quick")
    promoted = [t for t in study.trials if "promoted_from" in t.user_attrs]
    assert promoted
    source = promoted[0].user_attrs["promoted_from"]
    assert f"promoted from trial {source}, re-using its finished fold 0" in log
    assert "finished folds" not in log.replace("its finished fold 0", "")
    pruned = [line for line in log.splitlines() if " pruned: " in line]
    assert all("fold scores 0." in line for line in pruned)
    full = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "10", cwd=tmp_path)
    assert full.returncode == 0
    assert "12 of 10" not in full.stderr
    assert "already holds 12 finished trials (--n-trials 10)" in full.stderr


def test_a_full_study_says_so_and_starts_no_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "3", cwd=tmp_path).returncode == 0
    out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "2", "-v", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 finished (more than --n-trials 2)" in out.stdout and "3/2" not in out.stdout
    assert "worker 0 ready" not in out.stderr


def test_a_changed_image_size_is_named_as_the_flag_not_as_other_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "2", cwd=tmp_path).returncode == 0
    out = run_cli(
        "--study", "quick", "--data", "demo", "--image-size", "48", "--trainer", "fake",
        "--storage", url, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2 and "--image-size 32, not 48" in out.stderr
    other = run_cli(*FAKE_QUICK[2:], "--study", "mobilenet", "--name", "quick", "--storage", url,
                    cwd=tmp_path)  # fmt: skip
    assert other.returncode == 2 and "resume it with --study quick" in other.stderr


def test_in_memory_sqlite_is_refused_in_both_spellings(tmp_path: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        out = run_cli(*FAKE_QUICK, "--storage", url, cwd=tmp_path)
        assert out.returncode == 2 and "in-memory" in out.stderr, url
