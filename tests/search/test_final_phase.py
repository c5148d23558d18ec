"""The --budget run's last phase: a re-run after it finished, a check with no time for it, an
interrupt while the final model trains, and an --export that cannot be written."""

from __future__ import annotations

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
from search.engine.finish import SPENT, BudgetClock, FinalSetup, handed_over
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


def _handed(tmp_path: Path, budget: float | None = 60.0) -> tuple[optuna.Study, Path]:
    folder = tmp_path / "models" / "quick"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(SPENT, 61.5)
    record = {"folder": str(folder.resolve()), "trial": 3, "epochs": 12, "image_size": 32}
    study.set_user_attr(FINAL_RECIPE, {**record, "budget": budget})
    return study, folder


def test_the_same_budget_command_after_it_finished_keeps_the_model(tmp_path: Path) -> None:
    study, folder = _handed(tmp_path)
    line = handed_over(study, SimpleNamespace(out=folder), 60.0)  # type: ignore[arg-type]
    assert line is not None and line.startswith(f"model: {folder} (trial 3, 12 epochs at 32px)")
    assert "1.0 min of its 1.0 min budget" in line and "larger --budget" in line
    # the same budget or less: kept
    assert handed_over(study, SimpleNamespace(out=folder), 30.0) is not None  # type: ignore[arg-type]


def test_a_larger_budget_another_folder_or_a_removed_model_trains_again(tmp_path: Path) -> None:
    study, folder = _handed(tmp_path)
    assert handed_over(study, SimpleNamespace(out=folder), 120.0) is None  # type: ignore[arg-type]
    other = SimpleNamespace(out=tmp_path / "elsewhere")
    assert handed_over(study, other, 60.0) is None  # type: ignore[arg-type]
    (folder / "config.json").unlink()  # config.json marks a complete export
    assert handed_over(study, SimpleNamespace(out=folder), 60.0) is None  # type: ignore[arg-type]


def test_a_record_without_its_budget_trains_again(tmp_path: Path) -> None:
    study, folder = _handed(tmp_path, budget=None)  # recorded before the budget was
    assert handed_over(study, SimpleNamespace(out=folder), 60.0) is None  # type: ignore[arg-type]


def _best_trial() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
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
    ticks = iter([0.0, 0.0, 40.0, 40.0, 40.0, 40.0])
    clock = BudgetClock(study, 60.0, INPUTS, clock=lambda: next(ticks, 40.0))

    def killed(*_a, **_k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not interrupt the final model")

    monkeypatch.setattr(finish, "train_final", killed)
    final = FinalSetup(out=tmp_path / "m", data=None, inputs=INPUTS)
    request = SimpleNamespace(data="x.npz", storage="sqlite:///x.db")
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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = _best_trial()
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
    # another trial's record is not this one's
    study.set_user_attr(FINAL_CHECK, {**study.user_attrs[FINAL_CHECK], "trial": 99})
    finish._recipe(best, final, 1e6, study)
    assert len(ran) == 2


def test_the_time_spent_is_recorded_while_the_final_model_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread writes the time spent as the final model trains: a kill -9 there loses little."""
    study = _best_trial()
    clock = BudgetClock(study, 60.0, INPUTS)
    monkeypatch.setattr(finish, "RECORD_EVERY", 0.05)
    seen: list[float] = []

    def trains(*_a, **_k):
        time.sleep(0.5)
        seen.append(study.user_attrs[SPENT])
        raise KeyboardInterrupt  # end it here; what was recorded meanwhile is the point

    monkeypatch.setattr(finish, "train_final", trains)
    request = SimpleNamespace(data="x.npz", storage="sqlite:///x.db")
    final = FinalSetup(out=tmp_path / "m", data=None, inputs=INPUTS)
    assert finish.run_final(study, final, clock, request) == EXIT_INTERRUPTED  # type: ignore[arg-type]
    assert seen and seen[0] >= 0.2  # recorded at 0.0 when it began, then while it trained
