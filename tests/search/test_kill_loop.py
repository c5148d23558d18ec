"""SIGKILL the coordinator at random points, over and over: nothing finished is ever lost."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.search.cli import FAKE_QUICK, by_state, load, run_cli, start_cli

ARGS = (
    *FAKE_QUICK,
    "--n-trials",
    "40",
    "--pruner",
    "default",
    "--heartbeat",
    "2",
)


def _finished(url: str) -> dict[int, tuple]:
    try:
        study = load(url, "quick")
    except KeyError:
        return {}
    return {
        t.number: (t.state, t.value, t.params, t.user_attrs.get("fold_scores"))
        for t in study.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }


def _running(url: str) -> list:
    try:
        return [t for t in load(url, "quick").trials if t.state == TrialState.RUNNING]
    except KeyError:
        return []


def _wait(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _past_first_fold(url: str) -> bool:
    """A running trial is inside its second fold or later: past the fold-0 decision."""
    epochs = 4  # the quick space's epochs per fold
    return any(
        "fold_0" in t.user_attrs and max(t.intermediate_values, default=-1) >= epochs
        for t in _running(url)
    )


@pytest.mark.slow
def test_ten_random_sigkills_then_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    rng = random.Random(20261125)
    seen: dict[int, tuple] = {}
    phases = ["ask", "fold", "tell", "random", "fold"] * 2
    for phase in phases:
        proc = start_cli(*ARGS, "--storage", url, cwd=tmp_path, FAKE_EPOCH_SECONDS="0.06")
        done_before = len(_finished(url))
        known = {t.number for t in _running(url)}

        def asked(known=known) -> bool:
            return any(t.number not in known for t in _running(url))

        def told(done_before=done_before) -> bool:
            return len(_finished(url)) > done_before

        if phase == "ask":  # a trial was just asked for: kill before or while it is tagged
            landed = _wait(asked)
        elif phase == "fold":  # inside a trial, past its first fold (and the fold-0 decision)
            landed = _wait(lambda: _past_first_fold(url))
        elif phase == "tell":  # right as a trial is told
            landed = _wait(told)
        else:
            landed = _wait(lambda: bool(_running(url)))
            time.sleep(rng.uniform(0.0, 2.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert landed, f"the {phase} kill's moment never came"
        # The killed coordinator's state is frozen in storage: the kill landed where intended.
        if phase == "ask":
            assert asked(), "the ask kill found no newly asked trial"
        elif phase == "fold":
            assert _past_first_fold(url), "the fold kill did not land inside a later fold"
        elif phase == "tell":
            assert told(), "the tell kill came before any trial was told"
        now = _finished(url)
        for number, record in seen.items():
            assert now[number] == record, f"finished trial {number} changed after a kill"
        seen = now
    out = run_cli(*ARGS, "--storage", url, cwd=tmp_path, timeout=300, FAKE_EPOCH_SECONDS="0.06")
    assert out.returncode == 0, out.stderr[-3000:]
    final = _finished(url)
    for number, record in seen.items():
        assert final[number] == record
    study = load(url, "quick")
    states = by_state(study)
    assert not states[TrialState.RUNNING] and not states[TrialState.WAITING]
    assert len(final) == 40
    # No configuration finished twice: each failed trial has at most one retry, and a retried
    # trial never finished itself.
    sources = [t.user_attrs["retry_of"] for t in study.trials if "retry_of" in t.user_attrs]
    assert len(sources) == len(set(sources))
    for number in sources:
        assert study.trials[number].state == TrialState.FAIL
    kinds = [t.user_attrs.get("failure_kind") for t in states[TrialState.FAIL]]
    assert set(kinds) <= {"interrupted", "heartbeat_stale", "surplus"}, kinds
    # The four kills timed inside a fold always catch a trial in flight; "ask", "tell" and
    # "random" kills may land between trials. The drill must have hit trials, not only idle time.
    assert len(kinds) >= 4
    reused = sum(bool(t.user_attrs.get("reused_folds")) for t in study.trials)
    print(
        f"\nkill loop: 10 kills, {len(kinds)} trials failed by them ({sorted(set(kinds))}), "
        f"{len(sources)} re-run, {reused} of them reusing finished folds, 40 finished kept"
    )
