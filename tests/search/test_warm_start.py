"""--warm-start: a new study starts from an earlier study's best configurations, re-scored on its
own data (fake trainer: what is under test is what gets queued, and that it is trained)."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from search.engine.warm_start import fit, split_spec
from search.testing.fake import trained_folds
from spaces import SPACES
from spaces.base import StudySettings
from storage.records import STARTING_POINT, ranked_complete
from tests.search.cli import FAKE_QUICK, load, run_cli, snapshot

SETTINGS = StudySettings(epochs=4, weights="none", seed=0, image_size=32)


def _earlier(tmp_path: Path, url: str, name: str = "first") -> list:
    # sampled learning rates (no portfolio): the fake's log tells the trials apart by them
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", name, "--n-trials", "6", "--pruner", "none",
        "--seed", "3", "--no-portfolio", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return ranked_complete(load(url, name))


def test_the_earlier_best_is_the_new_studys_first_trial_rescored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ranked = _earlier(tmp_path, url)
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", "second", "--n-trials", "6", "--pruner", "none",
        "--warm-start", "first", cwd=tmp_path, FAKE_TRAINED_LOG=str(tmp_path / "trained.log"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    trials = sorted(load(url, "second").trials, key=lambda t: t.number)
    first = trials[0]
    assert first.params == ranked[0].params
    assert first.user_attrs["warm_start"] == f"first#{ranked[0].number}"
    assert first.state == TrialState.COMPLETE
    # trained and scored here, every fold, not copied from the earlier study
    assert trained_folds(tmp_path / "trained.log", first.params["learning_rate"]) == [0, 1, 2]
    # the next best two follow, then the space's portfolio
    assert [t.user_attrs.get("warm_start") for t in trials[1:3]] == [
        f"first#{t.number}" for t in ranked[1:3]
    ]
    portfolio = SPACES["quick"].starting_params(SETTINGS)
    assert [t.params for t in trials[3 : 3 + len(portfolio)]] == portfolio
    assert all(t.user_attrs.get(STARTING_POINT) for t in trials[3 : 3 + len(portfolio)])
    assert "warm start: first#" in out.stderr


def test_a_study_in_another_database_by_name_at_url(tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    ranked = _earlier(tmp_path, other, "lab1")
    url = f"sqlite:///{tmp_path / 'b.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "2", "--pruner", "none",
        "--warm-start", f"lab1@{other}", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    first = min(load(url, "quick").trials, key=lambda t: t.number)
    assert first.params == ranked[0].params


def test_a_missing_study_is_one_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _earlier(tmp_path, url)
    before = snapshot(url, "first")
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", "second", "--n-trials", "2",
        "--warm-start", "frist", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert "no study 'frist'" in out.stderr and "studies there: first" in out.stderr
    assert snapshot(url, "first") == before
    import optuna

    assert optuna.get_all_study_names(url) == ["first"]
    missing = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", "third", "--n-trials", "2",
        "--warm-start", f"first@sqlite:///{tmp_path / 'nowhere.db'}", cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode == 2 and "no study 'first' at sqlite:///" in missing.stderr
    assert not (tmp_path / "nowhere.db").exists()


def test_fitting_drops_clips_and_refuses() -> None:
    space = SPACES["quick"]
    params = {
        "backbone": "small_cnn",
        "learning_rate": 0.5,  # above quick's range
        "augment": "heavy",  # not a quick level
        "unfreeze_small_cnn": 2,  # not sampled from scratch
        "dropout": 0.2,
    }
    fitted, notes = fit(params, space, SETTINGS)
    assert fitted is not None
    assert fitted["learning_rate"] == space.learning_rate[1]
    assert "augment" not in fitted and "unfreeze_small_cnn" not in fitted
    assert fitted["dropout"] == 0.2
    assert any("learning_rate" in n for n in notes) and any("augment" in n for n in notes)
    refused, why = fit({"backbone": "ConvNeXtTiny"}, space, SETTINGS)
    assert refused is None and "ConvNeXtTiny is not searched here" in why[0]


def test_the_spec_splits_at_the_first_at_sign() -> None:
    assert split_spec("s1", "sqlite:///x.db") == ("s1", "sqlite:///x.db")
    assert split_spec("s1@postgresql://u:p@h/db", "sqlite:///x.db") == (
        "s1",
        "postgresql://u:p@h/db",
    )
