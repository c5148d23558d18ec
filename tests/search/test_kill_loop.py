"""SIGKILL the coordinator at random points, over and over: nothing finished is ever lost."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.search.cli import by_state, load, run_cli, start_cli

ARGS = (
    "--study",
    "quick",
    "--data",
    "demo",
    "--image-size",
    "32",
    "--trainer",
    "fake",
    "--n-trials",
    "12",
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


@pytest.mark.slow
def test_ten_random_sigkills_then_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    rng = random.Random(20261125)
    seen: dict[int, tuple] = {}
    for _cycle in range(10):
        proc = start_cli(*ARGS, "--storage", url, cwd=tmp_path, FAKE_EPOCH_SECONDS="0.03")
        time.sleep(rng.uniform(1.5, 5.0))  # start-up, ask, inside a fold, tell: all get hit
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        now = _finished(url)
        for number, record in seen.items():
            assert now[number] == record, f"finished trial {number} changed after a kill"
        seen = now
    out = run_cli(*ARGS, "--storage", url, cwd=tmp_path, timeout=300, FAKE_EPOCH_SECONDS="0.03")
    assert out.returncode == 0, out.stderr[-3000:]
    final = _finished(url)
    for number, record in seen.items():
        assert final[number] == record
    study = load(url, "quick")
    states = by_state(study)
    assert not states[TrialState.RUNNING] and not states[TrialState.WAITING]
    assert len(final) == 12
    # No configuration finished twice: each failed trial has at most one retry, and a retried
    # trial never finished itself.
    sources = [t.user_attrs["retry_of"] for t in study.trials if "retry_of" in t.user_attrs]
    assert len(sources) == len(set(sources))
    for number in sources:
        assert study.trials[number].state == TrialState.FAIL
    kinds = {t.user_attrs.get("failure_kind") for t in states[TrialState.FAIL]}
    assert kinds <= {"interrupted", "heartbeat_stale", "surplus"}, kinds
