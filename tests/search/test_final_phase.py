"""The --budget run's last phase: a re-run after it finished, a check with no time for it, an
interrupt while the final model trains, and an --export that cannot be written."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from search.cli import EXIT_INTERRUPTED
from search.engine import finish
from search.engine.final_records import handed_over
from search.engine.finish import SPENT, BudgetClock, FinalSetup
from search.policy import final as final_policy
from search.policy.final import RecipeInputs
from storage.study import FINAL_CHECK, FINAL_RECIPE
from tests.search.test_budget import _fold
from trainer.config import TrialConfig

INPUTS = RecipeInputs(
    search_size=32,
    final_size=32,
    search_epochs=4,
    train_images_per_fold=400,
    all_images=600,
    metric="accuracy",
)


def _handed(tmp_path: Path, **asked_changes) -> tuple[optuna.Study, FinalSetup, dict]:
    """A study whose --budget run handed trial 0's model to models/quick, asked for ``ASKED``."""
    study = _best_trial()
    folder = tmp_path / "models" / "quick"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"study": study.study_name, "trial": 0}))
    study.set_user_attr(SPENT, 61.5)
    final = FinalSetup(out=folder, data=None, inputs=INPUTS)
    asked = finish.asked_for(final, 60.0, None)
    record = {"folder": str(folder.resolve()), "trial": 0, "epochs": 12, "image_size": 32}
    study.set_user_attr(FINAL_RECIPE, {**record, "asked": {**asked, **asked_changes}})
    return study, final, asked


def test_the_same_budget_command_after_it_finished_keeps_the_model(tmp_path: Path) -> None:
    study, final, asked = _handed(tmp_path)
    line = finish.kept_model(study, final, 60.0, None)
    assert line is not None
    assert line.startswith(f"model: {final.out} (trial 0, 12 epochs at 32px), kept")
    assert "1.0 min of its 1.0 min budget" in line and "larger --budget" in line
    assert finish.kept_model(study, final, 30.0, None) is not None  # a smaller budget: kept


@pytest.mark.parametrize(
    "change",
    ["larger budget", "final augment", "tta", "n_trials", "other folder", "removed", "other export",
     "better trial"],
)  # fmt: skip
def test_what_would_change_the_model_trains_it_again(tmp_path: Path, change: str) -> None:
    study, final, asked = _handed(tmp_path)
    budget, n_trials = 60.0, None
    if change == "larger budget":
        budget = 120.0
    elif change == "final augment":
        final = dataclasses.replace(final, inputs=dataclasses.replace(INPUTS, augment="searched"))
    elif change == "tta":
        final = dataclasses.replace(final, tta=False)
    elif change == "n_trials":
        n_trials = 40
    elif change == "other folder":
        final = dataclasses.replace(final, out=tmp_path / "elsewhere")
    elif change == "removed":
        (final.out / "config.json").unlink()  # config.json marks a complete export
    elif change == "other export":
        (final.out / "config.json").write_text(json.dumps({"study": "other", "trial": 0}))
    else:  # a better trial finished since (another coordinator, a run without --budget)
        trial = study.ask()
        better = _fold([0.7, 0.8, 0.85, 0.9], seconds_per_epoch=3.0)
        trial.set_user_attr("fold_0", better.to_dict())
        trial.set_user_attr("config", TrialConfig(backbone="small_cnn").to_dict())
        study.tell(trial, 0.9)
    assert finish.kept_model(study, final, budget, n_trials) is None


def test_a_record_without_what_was_asked_trains_again(tmp_path: Path) -> None:
    study, final, _ = _handed(tmp_path)
    record = dict(study.user_attrs[FINAL_RECIPE])
    del record["asked"]  # recorded before it was
    study.set_user_attr(FINAL_RECIPE, record)
    assert handed_over(study, final.out, finish.asked_for(final, 60.0, None), 0) is None


def _best_trial(storage: str | None = None) -> optuna.Study:
    study = optuna.create_study(direction="maximize", storage=storage)
    trial = study.ask()
    fold = _fold([0.5, 0.6, 0.65, 0.66], seconds_per_epoch=3.0)
    trial.set_user_attr("fold_0", fold.to_dict())
    trial.set_user_attr("config", TrialConfig(backbone="small_cnn", augment="light").to_dict())
    study.tell(trial, 0.66)
    return study


@pytest.mark.parametrize("room", [2.0, 0.5])  # what half of the time left holds, in checks
def test_the_paired_check_runs_only_when_half_of_what_is_left_holds_it(
    room: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _best_trial()
    best = study.best_trial
    folds = [f for f in finish.fold_results(best) if not f.stopped]
    expected = final_policy.check_seconds(folds, INPUTS.train_images_per_fold, 32, 4)
    assert expected > 0
    ran: list[int] = []

    def fake_check(stored, data, fold, epochs, candidate_epochs=None):
        ran.append(epochs)
        same = (np.array([0, 1]), np.array([0, 1]))
        return final_policy.paired_check(
            "light", "robust", epochs, np.array([0, 1]), {"light": same, "robust": same}, 1.0,
            2 * epochs,
        )  # fmt: skip

    monkeypatch.setattr(finish, "run_check", fake_check)
    final = FinalSetup(out=Path("m"), data=None, inputs=INPUTS, folds=[object()])
    left = room * expected / final_policy.CHECK_MAX_SHARE
    recipe, check, _ = finish._recipe(best, final, left)
    if room >= 1.0:  # the check takes at most half of what is left
        assert ran and check is not None
    else:
        assert not ran and check is None
        assert recipe.augment == "light" and "no check was run" in recipe.augment_reason


def test_an_interrupt_while_the_final_model_trains_is_said_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM (as SIGINT) during the final training: exit 130, one line saying what is kept,
    and the seconds spent recorded on the study, so a re-run counts them."""
    study = _best_trial()
    now = [0.0]
    clock = BudgetClock(study, 60.0, INPUTS, clock=lambda: now[0])

    def killed(*_a, **_k):
        now[0] = 40.0  # only a record on the way out can write this
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not interrupt the final model")

    monkeypatch.setattr(finish, "train_final", killed)
    final = FinalSetup(out=tmp_path / "m", data=None, inputs=INPUTS)
    request = SimpleNamespace(data="x.npz", storage="sqlite:///x.db", n_trials=None)
    missed: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _f: missed.append(signum))
    try:  # without the final phase's own handler, the guard takes the signal: a plain failure
        guard = signal.getsignal(signal.SIGTERM)
        code = finish.run_final(study, final, clock, request)  # type: ignore[arg-type]
        assert signal.getsignal(signal.SIGTERM) == guard  # the handlers come back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert not missed
    assert code == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted (SIGTERM) while training the final model" in err
    assert f"{tmp_path / 'm'} holds no complete model" in err and "Traceback" not in err
    assert study.user_attrs[SPENT] == 40.0


def test_an_export_folder_that_cannot_be_written_is_refused_before_the_search(
    tmp_path: Path,
) -> None:
    from tests.search.cli import FAKE_QUICK, run_cli

    out = run_cli(
        *FAKE_QUICK, "--budget", "1m", "--export", "/proc/search-test/model", cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "--export /proc/search-test/model: cannot write in /proc" in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written: no study, no folder
    assert "model:" not in out.stdout


def test_a_resumed_run_reuses_the_paired_check_an_earlier_run_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _best_trial(f"sqlite:///{tmp_path / 'studies.db'}")  # the record's JSON round trip
    best = study.best_trial
    ran: list[int] = []

    def fake_check(stored, data, fold, epochs, candidate_epochs=None):
        ran.append(epochs)
        labels = np.array([0, 1, 1, 0, 1, 0, 1, 1])
        wrong = 1 - labels
        wrong[:4] = labels[:4]  # light misses half of them, robust none
        return final_policy.paired_check(
            "light", "robust", epochs, labels,
            {"light": (wrong, wrong), "robust": (labels, labels)}, 9.0, 2 * epochs,
        )  # fmt: skip

    monkeypatch.setattr(finish, "run_check", fake_check)
    final = FinalSetup(out=Path("m"), data=None, inputs=INPUTS, folds=[object()])
    first, check, _ = finish._recipe(best, final, 1e6, study)
    again, reused, _ = finish._recipe(best, final, 1e6, study)  # the same study, run again
    assert len(ran) == 1 and reused == check and check is not None and check.taken
    assert again.augment == first.augment == "robust"
    # another trial's record is not this one's, nor one at other epochs
    recorded = dict(study.user_attrs[FINAL_CHECK])
    study.set_user_attr(FINAL_CHECK, {**recorded, "trial": 99})
    finish._recipe(best, final, 1e6, study)
    study.set_user_attr(FINAL_CHECK, {**recorded, "epochs": recorded["epochs"] + 1})
    finish._recipe(best, final, 1e6, study)
    assert len(ran) == 3


def test_the_time_spent_is_recorded_while_the_final_model_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread writes the time spent as the final model trains: a kill -9 there loses little."""
    study = _best_trial(f"sqlite:///{tmp_path / 'studies.db'}")
    clock = BudgetClock(study, 60.0, INPUTS)
    monkeypatch.setattr(finish, "RECORD_EVERY", 0.05)
    seen: list[float] = []

    def trains(*_a, **_k):
        time.sleep(0.5)
        seen.append(study.user_attrs[SPENT])
        raise KeyboardInterrupt  # end it here; what was recorded meanwhile is the point

    monkeypatch.setattr(finish, "train_final", trains)
    request = SimpleNamespace(data="x.npz", storage="sqlite:///x.db", n_trials=None)
    final = FinalSetup(out=tmp_path / "m", data=None, inputs=INPUTS)
    assert finish.run_final(study, final, clock, request) == EXIT_INTERRUPTED  # type: ignore[arg-type]
    assert seen and seen[0] >= 0.2  # recorded at 0.0 when it began, then while it trained
