"""Worker faults through the real CLI: each fails only its trial, with the reason stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from search.faults import hook_for, parse
from tests.search.cli import FAKE_QUICK, by_state, load, run_cli


def test_fault_spec_parsing() -> None:
    assert parse("oom@3, nan@5:1,hang@7") == {3: ("oom", 0), 5: ("nan", 1), 7: ("hang", 0)}
    with pytest.raises(ValueError, match="KIND@TRIAL"):
        parse("melt@3")
    assert hook_for(2, {"SEARCH_FAULTS": "oom@3"}) is None


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
