"""Several coordinators ("hosts") sharing one study: PostgreSQL across hosts, SQLite on one host."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.policy import pruning
from search.testing.fake import trained_folds
from tests.conftest import require
from tests.search.cli import FAKE_QUICK, by_state, load, start_cli


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    url = os.environ.get("SEARCH_TEST_POSTGRES_URL", "")
    require(bool(url), "SEARCH_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
    return url


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_hosts_share_a_postgres_study_and_survive_one_dying(pg_url: str, tmp_path: Path):
    name = f"multihost-{os.getpid()}-{int(time.time())}"
    args = (
        *FAKE_QUICK,
        "--storage",
        pg_url,
        "--name",
        name,
        "--n-trials",
        "10",
        "--pruner",
        "none",
        "--heartbeat",
        "1",
        "--no-portfolio",  # sampled learning rates: the trained log tells configurations apart
    )
    log = str(tmp_path / "trained.txt")  # both hosts append the folds they train
    a = start_cli(
        *args, cwd=tmp_path, SEARCH_HOST="host-a", FAKE_EPOCH_SECONDS="0.1", FAKE_TRAINED_LOG=log
    )
    b = start_cli(
        *args, cwd=tmp_path, SEARCH_HOST="host-b", FAKE_EPOCH_SECONDS="0.1", FAKE_TRAINED_LOG=log
    )
    try:

        def a_mid_trial() -> bool:
            try:
                study = load(pg_url, name)
            except KeyError:
                return False
            states = by_state(study)
            done_by_a = any(
                t.user_attrs.get("host") == "host-a" for t in states[TrialState.COMPLETE]
            )
            return done_by_a and any(
                t.user_attrs.get("host") == "host-a" and "fold_0" in t.user_attrs
                for t in states[TrialState.RUNNING]
            )

        _wait(a_mid_trial, 120, "host-a to finish a trial and be inside the next")
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        victim = next(
            t
            for t in by_state(load(pg_url, name))[TrialState.RUNNING]
            if t.user_attrs.get("host") == "host-a"
        )
        output, _ = b.communicate(timeout=300)
        assert b.returncode == 0, output[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    study = load(pg_url, name)
    states = by_state(study)
    assert not states[TrialState.RUNNING] and not states[TrialState.WAITING]
    assert len(states[TrialState.COMPLETE]) == 10
    dead = study.trials[victim.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["failure_kind"] == "heartbeat_stale"
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["host"] == "host-b"
    # The retry re-used the folds host-a had finished: recorded as re-used, equal to the dead
    # trial's records, and trained once in all (the fake's trained-fold log is shared).
    reused = retries[0].user_attrs["reused_folds"]
    assert reused and reused[0] == 0
    for fold in reused:
        assert retries[0].user_attrs[f"fold_{fold}"] == dead.user_attrs[f"fold_{fold}"]
    trained = trained_folds(log, victim.params["learning_rate"])
    assert all(trained.count(fold) == 1 for fold in reused) and set(trained) == {0, 1, 2}
    hosts = Counter(t.user_attrs.get("host") for t in states[TrialState.COMPLETE])
    assert hosts["host-a"] >= 1 and hosts["host-b"] >= 1
    # Two coordinators on one study draw different configurations (the samplers are seeded
    # per trial number): only retries, and the screen's promotion of its best first fold (when
    # no fourth trial beat the screen), repeat one.
    repeats = ("retry_of", pruning.PROMOTED_FROM)
    drawn = [
        tuple(sorted(t.params.items()))
        for t in study.trials
        if not any(k in t.user_attrs for k in repeats)
    ]
    assert len(drawn) == len(set(drawn))
    for t in study.trials:
        if pruning.PROMOTED_FROM in t.user_attrs:
            assert t.params == study.trials[t.user_attrs[pruning.PROMOTED_FROM]].params
    retry_sources = [t.user_attrs["retry_of"] for t in study.trials if "retry_of" in t.user_attrs]
    assert len(retry_sources) == len(set(retry_sources)), "a configuration was re-queued twice"
    optuna.delete_study(study_name=name, storage=pg_url)


@pytest.mark.slow
def test_four_coordinators_on_one_sqlite_file_run_200_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = (*FAKE_QUICK, "--storage", url, "--n-trials", "200", "--pruner", "none", "--epochs", "1")
    first = start_cli(*args, cwd=tmp_path, SEARCH_HOST="h0")

    def created() -> bool:
        try:
            return bool(load(url, "quick").get_trials(deepcopy=False))  # set up, trials asked
        except KeyError:
            return False

    _wait(created, 60, "the first coordinator to set up the study and ask a trial")
    procs = [first] + [start_cli(*args, cwd=tmp_path, SEARCH_HOST=f"h{i}") for i in (1, 2, 3)]
    # A dashboard-like reader polls the same file all along; every read must succeed.
    reads = 0
    while any(p.poll() is None for p in procs):
        load(url, "quick").get_trials(deepcopy=False)
        reads += 1
        time.sleep(0.5)
    outputs = [p.communicate()[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "database is locked" not in out
    states = by_state(load(url, "quick"))
    assert len(states[TrialState.COMPLETE]) == 200
    assert not states[TrialState.RUNNING]
    # Racing coordinators may each ask one trial too many; those are handed back, never run.
    assert all(t.user_attrs["failure_kind"] == "surplus" for t in states[TrialState.FAIL])
    assert all("fold_0" not in t.user_attrs for t in states[TrialState.FAIL])
    assert len({t.user_attrs["host"] for t in states[TrialState.COMPLETE]}) == 4
    assert reads >= 1
