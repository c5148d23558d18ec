"""Faults through the real command line (fake trainer: the coordinator is what is under test)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.testing.fake import trained_folds
from tests.search.cli import FAKE_QUICK, by_state, load, run_cli, start_cli


def _wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (KeyError, optuna.exceptions.StorageInternalError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_mid_trial_then_resume_reaches_exactly_n_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # sampled learning rates (no portfolio): the fake's log tells the configurations apart
    args = (*FAKE_QUICK, "--storage", url, "--n-trials", "5", "--pruner", "none", "--no-portfolio")
    log = tmp_path / "trained.txt"
    proc = start_cli(*args, cwd=tmp_path, FAKE_EPOCH_SECONDS="0.15", FAKE_TRAINED_LOG=str(log))

    def mid_trial() -> bool:
        states = by_state(load(url, "quick"))
        running = states[TrialState.RUNNING]
        return len(states[TrialState.COMPLETE]) >= 1 and any(
            "fold_0" in t.user_attrs for t in running
        )

    try:
        _wait_for(mid_trial, what="a trial past its first fold, after one complete trial")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    study = load(url, "quick")
    before = by_state(study)
    victim = before[TrialState.RUNNING][0]
    kept = {t.number: t.value for t in before[TrialState.COMPLETE]}
    worker_pid = int(victim.user_attrs["worker_pid"])
    _wait_for(lambda: not _alive(worker_pid), timeout=20, what="the orphaned worker to exit")

    out = run_cli(
        *args, cwd=tmp_path, FAKE_EPOCH_SECONDS="0.05", FAKE_TRAINED_LOG=str(log), timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    after = by_state(load(url, "quick"))
    assert not after[TrialState.RUNNING] and not after[TrialState.WAITING]
    assert len(after[TrialState.COMPLETE]) + len(after[TrialState.PRUNED]) == 5
    assert {t.number: t.value for t in after[TrialState.COMPLETE] if t.number in kept} == kept
    failed = {t.number: t for t in after[TrialState.FAIL]}
    assert failed[victim.number].user_attrs["failure_kind"] == "interrupted"
    retry = [t for t in after[TrialState.COMPLETE] if t.user_attrs.get("retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params
    reused = retry[0].user_attrs["reused_folds"]
    assert reused and reused[0] == 0
    assert retry[0].user_attrs["fold_0"] == victim.user_attrs["fold_0"]
    # Not trained again: of the victim's configuration, the folds it had finished before the
    # kill were trained once; the one it was in (if it had started) again by the retry.
    trained = trained_folds(log, victim.params["learning_rate"])
    assert all(trained.count(fold) == 1 for fold in reused)
    assert set(trained) == {0, 1, 2} and max(trained.count(f) for f in range(3)) <= 2
    # The resumed run's sampler draws new configurations: only the retry repeats one.
    drawn = [
        tuple(sorted(t.params.items()))
        for t in load(url, "quick").trials
        if "retry_of" not in t.user_attrs
    ]
    assert len(drawn) == len(set(drawn))


def test_killed_worker_fails_only_its_trial_and_is_replaced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = (*FAKE_QUICK, "--storage", url, "--n-trials", "4", "--pruner", "none")
    proc = start_cli(*args, cwd=tmp_path, FAKE_EPOCH_SECONDS="0.15")
    try:
        _wait_for(
            lambda: any(
                "fold_0" in t.user_attrs for t in by_state(load(url, "quick"))[TrialState.RUNNING]
            ),
            what="a running trial",
        )
        victim = by_state(load(url, "quick"))[TrialState.RUNNING][0]
        os.kill(int(victim.user_attrs["worker_pid"]), signal.SIGKILL)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-2000:]
    states = by_state(load(url, "quick"))
    failed = {t.number: t for t in states[TrialState.FAIL]}
    assert failed[victim.number].user_attrs["failure_kind"] == "worker_died"
    assert "SIGKILL" in failed[victim.number].user_attrs["failure_reason"]
    assert len(states[TrialState.COMPLETE]) == 4
    pids = {t.user_attrs["worker_pid"] for t in states[TrialState.COMPLETE]}
    assert int(victim.user_attrs["worker_pid"]) not in pids or len(pids) > 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_leaves_no_trial_running_and_the_same_command_resumes(
    tmp_path: Path, stop: signal.Signals
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    proc = start_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "5", cwd=tmp_path, FAKE_EPOCH_SECONDS="0.2"
    )
    try:
        _wait_for(lambda: by_state(load(url, "quick"))[TrialState.RUNNING], what="a trial")
        proc.send_signal(stop)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-2000:]
    assert "re-run" in output
    states = by_state(load(url, "quick"))
    assert not states[TrialState.RUNNING]
    interrupted = states[TrialState.FAIL]
    assert interrupted, "the trial that was running got no failed record"
    assert {t.user_attrs["failure_kind"] for t in interrupted} == {"interrupted"}
    # Re-running the same command resumes: each interrupted configuration is retried, and the
    # study ends with the 5 trials it asked for.
    out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "5", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    after = by_state(load(url, "quick"))
    assert len(after[TrialState.COMPLETE]) + len(after[TrialState.PRUNED]) == 5
    assert not after[TrialState.RUNNING] and not after[TrialState.WAITING]
    retried = {t.user_attrs.get("retry_of") for t in load(url, "quick").trials}
    assert {t.number for t in interrupted} <= retried


def test_timeout_starts_no_new_trial_and_a_rerun_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = (*FAKE_QUICK, "--storage", url, "--n-trials", "40", "--pruner", "none")
    # Each trial takes 3 folds x 4 epochs x 0.1 s: 40 of them would take over a minute.
    out = run_cli(*args, "--timeout", "2", cwd=tmp_path, FAKE_EPOCH_SECONDS="0.1", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--timeout 2 s reached: no new trial starts" in out.stderr
    first = by_state(load(url, "quick"))
    done = len(first[TrialState.COMPLETE])
    assert 1 <= done < 40 and not first[TrialState.RUNNING] and not first[TrialState.FAIL]
    again = run_cli(*args, "--timeout", "2", cwd=tmp_path, FAKE_EPOCH_SECONDS="0.1", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(by_state(load(url, "quick"))[TrialState.COMPLETE]) > done
