"""Worker faults through the real CLI: each fails only its trial, with the reason stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from search.testing.faults import hook_for, parse
from tests.search.cli import FAKE_QUICK, by_state, load, run_cli


def test_fault_spec_parsing() -> None:
    assert parse("oom@3, nan@5:1,hang@7") == {3: ("oom", 0), 5: ("nan", 1), 7: ("hang", 0)}
    with pytest.raises(ValueError, match="KIND@TRIAL"):
        parse("melt@3")
    armed = {"SEARCH_FAULTS": "oom@3", "SEARCH_FAULTS_ARMED": "1"}
    assert hook_for(2, armed) is None and hook_for(3, armed) is not None
    assert hook_for(3, {"SEARCH_FAULTS": "oom@3"}) is None  # not armed: no drill


def test_unarmed_drills_are_ignored_and_said_so(tmp_path: Path) -> None:
    """A SEARCH_FAULTS left in a shell cannot hurt a real study."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "3", "--pruner", "none", cwd=tmp_path,
        SEARCH_FAULTS="oom@0,exit@1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SEARCH_FAULTS='oom@0,exit@1' is set" in out.stderr and "ignored" in out.stderr
    states = by_state(load(url, "quick"))
    assert len(states[TrialState.COMPLETE]) == 3 and not states[TrialState.FAIL]


def test_armed_drills_are_announced_and_bad_ones_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    hang = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "2", cwd=tmp_path,
        SEARCH_FAULTS="hang@0", SEARCH_FAULTS_ARMED="1",
    )  # fmt: skip
    assert hang.returncode == 2 and "--trial-timeout" in hang.stderr
    bad = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "2", cwd=tmp_path,
        SEARCH_FAULTS="melt@0", SEARCH_FAULTS_ARMED="1",
    )  # fmt: skip
    assert bad.returncode == 2 and "KIND@TRIAL" in bad.stderr
    assert not (tmp_path / "studies.db").exists()
    armed = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "2", "--pruner", "none", cwd=tmp_path,
        SEARCH_FAULTS="nan@1", SEARCH_FAULTS_ARMED="1",
    )  # fmt: skip
    assert armed.returncode == 0, armed.stderr[-3000:]
    assert "fault drill armed" in armed.stderr and "trial 1 will fail" in armed.stderr
    failed = by_state(load(url, "quick"))[TrialState.FAIL]
    assert [t.number for t in failed] == [1]


def test_oom_nan_hang_and_killed_worker_each_fail_only_their_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *FAKE_QUICK,
        "--storage",
        url,
        "--n-trials",
        "7",
        "--pruner",
        "none",
        "--trial-timeout",
        "6",
        cwd=tmp_path,
        timeout=300,
        SEARCH_FAULTS="oom@1,nan@2:1,hang@3,exit@4:1",
        SEARCH_FAULTS_ARMED="1",
        FAKE_EPOCH_SECONDS="0.05",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    states = by_state(load(url, "quick"))
    failed = {t.number: t.user_attrs for t in states[TrialState.FAIL]}
    assert failed[1]["failure_kind"] == "out_of_memory" and "OOM" in failed[1]["failure_reason"]
    assert failed[2]["failure_kind"] == "non_finite_loss" and "nan" in failed[2]["failure_reason"]
    assert (
        failed[3]["failure_kind"] == "timeout"
        and "--trial-timeout 6" in failed[3]["failure_reason"]
    )
    assert failed[4]["failure_kind"] == "worker_died" and "SIGKILL" in failed[4]["failure_reason"]
    assert "fold_0" in failed[4]  # it died in fold 1, after finishing fold 0
    assert set(failed) == {1, 2, 3, 4}
    assert len(states[TrialState.COMPLETE]) + len(states[TrialState.PRUNED]) == 7
    assert not states[TrialState.RUNNING] and not states[TrialState.WAITING]
    retries = [t for t in states[TrialState.COMPLETE] if t.user_attrs.get("retry_of") == 4]
    assert len(retries) == 1 and retries[0].user_attrs["reused_folds"] == [0]
    # Deterministic failures are not retried.
    assert not any(t.user_attrs.get("retry_of") in (1, 2, 3) for t in load(url, "quick").trials)


def test_a_configuration_whose_worker_dies_twice_is_not_run_a_third_time(tmp_path: Path) -> None:
    """worker_died is retried once (a kill may come from outside: the kernel's OOM killer, a
    user); a configuration that kills its worker again is left out."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "5", "--pruner", "none", "--workers", "1",
        "--no-portfolio", cwd=tmp_path, timeout=300,
        SEARCH_FAULTS="exit@1,exit@2", SEARCH_FAULTS_ARMED="1",  # trial 2 is trial 1's retry
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    trials = load(url, "quick").trials
    assert [t.state for t in trials[1:3]] == [TrialState.FAIL] * 2
    assert {t.user_attrs["failure_kind"] for t in trials[1:3]} == {"worker_died"}
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert not any(t.user_attrs.get("retry_of") == 2 for t in trials)
    assert "has now failed that way 2 times, so it is not re-run again" in out.stderr
    states = by_state(load(url, "quick"))
    assert len(states[TrialState.COMPLETE]) == 5 and len(states[TrialState.FAIL]) == 2
