"""``--trainer MODULE:FUNCTION``: a user-supplied training function runs the trials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.search.cli import QUICK_32, by_state, load, run_cli

QUICK = (*QUICK_32, "--n-trials", "3")


def test_a_custom_trainer_trains_every_trial_in_the_workers(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = run_cli(
        *QUICK,
        "--storage", url,
        "--trainer", "tests.search.custom_trainer:train_trial",
        cwd=tmp_path,
        CUSTOM_TRAINER_LOG=str(log),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    calls = log.read_text().split()
    study = load(url, "quick")
    done = by_state(study)[TrialState.COMPLETE] + by_state(study)[TrialState.PRUNED]
    assert len(done) == 3 and len(calls) == 2 * len(done)
    pids = set(calls[0::2])
    assert str(os.getpid()) not in pids  # trained in a worker process, not the coordinator
    for t in done:
        assert repr(t.params["learning_rate"]) in calls[1::2]
        # The worker adds how long it waited on the coordinator's decisions to the timings.
        assert 0 <= t.user_attrs["timings"]["coordinator_wait"] < 60


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nosuch_pkg.train:train_trial", "cannot import module 'nosuch_pkg.train'"),
        ("tests.search.custom_trainer:missing", "has no function 'missing'"),
        ("tests.search.custom_trainer:not_callable", "has no function 'not_callable'"),
        ("no colon here", "is not keras, fake or MODULE:FUNCTION"),
    ],
)
def test_a_bad_trainer_is_one_clear_error_before_anything_is_written(
    tmp_path: Path, value: str, message: str
) -> None:
    db = tmp_path / "s.db"
    out = run_cli(*QUICK, "--storage", f"sqlite:///{db}", "--trainer", value, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not db.exists() and not (tmp_path / "artifacts").exists()


def test_the_fake_trainer_scores_every_augmentation_level() -> None:
    from search.testing.fake import fake_quality
    from trainer.config import AUGMENT_LEVELS, TrialConfig

    scores = {level: fake_quality(TrialConfig(augment=level)) for level in AUGMENT_LEVELS}
    assert all(0.0 < s < 1.0 for s in scores.values()) and len(set(scores.values())) > 1
