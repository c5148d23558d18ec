"""--objective accuracy,latency|params: a multi-objective study, pruning that never stops a trial
of the Pareto front for a costlier trial's accuracy, the front in the reports, and a point of it
picked by --trial, --max-latency-ms or the --budget limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search.engine.finish import final_candidate
from search.export import _limit, _pick_trial
from search.policy.pruning import FoldTest, make_pruner
from search.reporting.dashboard import study_note
from search.reporting.fold_epochs import reused_epochs, trial_budgets
from search.testing.fake import fake_cost
from storage.records import best_complete, epoch_values, fold_results, pareto_front, parse_objective
from tests.search.cli import FAKE_QUICK, QUICK_32, cli_env, load, run_cli
from trainer.config import TrialConfig
from trainer.records import EpochMetrics, FoldResult


def test_objective_spellings() -> None:
    assert parse_objective("accuracy") == "accuracy"
    assert parse_objective(" Accuracy, latency ") == "accuracy,latency"
    assert parse_objective("accuracy,params") == "accuracy,params"
    for bad in ("latency", "accuracy,speed", "accuracy,latency,params", "params,accuracy"):
        with pytest.raises(ValueError, match="--objective"):
            parse_objective(bad)


def _fake_study(tmp_path: Path, cost: str = "latency", *extra: str) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", "mo", "--n-trials", "16",
        "--objective", f"accuracy,{cost}", *extra, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return url, load(url, "mo")


def test_a_latency_study_is_multi_objective_with_each_trials_measured_cost(tmp_path: Path) -> None:
    _, study = _fake_study(tmp_path)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "latency_ms"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 8
    for t in complete:
        measured = fake_cost(TrialConfig.from_dict(t.user_attrs["config"]), "latency")
        assert t.user_attrs["latency_ms"] == pytest.approx(measured)
        assert t.values[1] == pytest.approx(measured)  # the second objective is that cost
    # the front is Optuna's own (non-dominated complete trials), cheapest first
    front = pareto_front(study)
    assert {t.number for t in front} == {t.number for t in study.best_trials}
    assert [t.values[1] for t in front] == sorted(t.values[1] for t in front)
    assert len(front) >= 2  # the fake makes a real trade-off
    # Optuna keeps no curves here: each epoch's score is the trial's own record, which the
    # report's fold-epoch accounting reads (a trained epoch is not counted as saved)
    epochs = int(study.user_attrs["epochs"])
    budgets = trial_budgets(
        study.get_trials(deepcopy=False), folds=int(study.user_attrs["folds"]), epochs=epochs
    )
    for t in complete:
        assert not t.intermediate_values
        steps = {r.fold * epochs + e.epoch: e.accuracy for r in fold_results(t) for e in r.epochs}
        assert epoch_values(t) == pytest.approx(steps)
        assert budgets[t.number].trained == len(steps) - reused_epochs(t) > 0
    note = study_note(study, "accuracy")
    assert "## Pareto front" in note and "latency_ms (minimize)" in note
    for t in front:
        assert f"| {t.number} | {t.values[0]:.4f} |" in note


def test_a_trainer_that_measures_no_cost_fails_each_trial_at_its_first_epoch(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    out = run_cli(
        *QUICK_32, "--storage", url, "--name", "mo", "--n-trials", "3",
        "--trainer", "tests.search.custom_trainer:no_cost", "--objective", "accuracy,latency",
        cwd=tmp_path,
    )  # fmt: skip
    trials = load(url, "mo").get_trials()
    assert trials and all(t.state == TrialState.FAIL for t in trials), out.stderr[-2000:]
    for t in trials:
        assert "sent no finite latency" in t.user_attrs["failure_reason"]
        assert "hooks.after_build" in t.user_attrs["failure_reason"]
        assert len(epoch_values(t)) == 1  # stopped at its first epoch, not after every fold


def test_params_objective_and_a_resume_cannot_change_the_objective(tmp_path: Path) -> None:
    url, study = _fake_study(tmp_path, "params")
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        cfg = TrialConfig.from_dict(t.user_attrs["config"])
        assert t.values[1] == fake_cost(cfg, "params") == t.user_attrs["params"]
    for objective in ("accuracy", "accuracy,latency"):
        out = run_cli(
            *FAKE_QUICK, "--storage", url, "--name", "mo", "--n-trials", "20",
            "--objective", objective, cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 2
        assert "created with --objective accuracy,params" in out.stderr
    resumed = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", "mo", "--n-trials", "18", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(load(url, "mo").trials) == 18


def test_bad_objective_flags_are_one_clear_error_and_write_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    cases = [
        (("--objective", "accuracy,speed"), "--objective 'accuracy,speed' is not one of"),
        (("--objective", "accuracy,latency", "--pruner", "median"), "--pruner median"),
        (("--max-latency-ms", "5"), "--max-latency-ms needs --budget"),
        (("--budget", "1m", "--max-latency-ms", "5"), "--objective accuracy,latency"),
        (
            ("--budget", "1m", "--objective", "accuracy,latency", "--max-params", "9"),
            "--objective accuracy,params",
        ),
        (("--objective", "accuracy,latency", "--max-latency-ms", "0", "--budget", "1m"), "must"),
    ]
    for flags, message in cases:
        out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "2", *flags, cwd=tmp_path)
        assert out.returncode == 2, (flags, out.stderr[-1000:])
        assert message in out.stderr, (flags, out.stderr[-1000:])
    assert not (tmp_path / "x.db").exists() or optuna.get_all_study_names(url) == []


def test_a_study_made_before_objectives_resumes_as_accuracy_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "2", cwd=tmp_path)
    assert out.returncode == 0
    study = load(url, "quick")
    storage = optuna.storages.RDBStorage(url)
    with storage.scoped_session() as session:  # as a study created before --objective existed
        from optuna.storages._rdb import models

        session.query(models.StudyUserAttributeModel).filter_by(key="objective").delete()
        session.commit()
    assert "objective" not in load(url, "quick").user_attrs
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "3", "--objective", "accuracy,latency",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2 and "created with --objective accuracy," in out.stderr
    assert len(load(url, "quick").trials) == len(study.trials)


# ---------------------------------------------------------------- pruning against cheaper trials
def _fold(fold: int, scores: list[float]) -> dict:
    epochs = tuple(
        EpochMetrics(e, s, s, s, s, s, 1 - s, 1 - s, 1e-3, 1.0) for e, s in enumerate(scores)
    )
    best = max(range(len(scores)), key=lambda e: scores[e])
    return FoldResult(fold, epochs, best, False, False, 0, 0).to_dict()


def _costed_study(points: list[tuple[float, float]]) -> optuna.Study:
    """A study with complete trials at (score, latency_ms); each fold scored ``score``."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objective", "accuracy,latency")
    study.set_user_attr("metric", "accuracy")
    for value, latency in points:
        attrs = {"latency_ms": latency, "fold_scores": [value] * 3}
        attrs.update({f"fold_{k}": _fold(k, [value - 0.3, value - 0.1, value]) for k in range(3)})
        study.add_trial(create_trial(values=[value, latency], user_attrs=attrs))
    return study


def test_pruning_compares_a_trial_only_with_trials_that_cost_no_more() -> None:
    study = _costed_study([(0.95, 10.0), (0.80, 2.0)])  # slow and accurate, fast and less so
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=3, n_trials=40, costed=True)
    assert pruner is not None and pruner.screen == 0  # the first-fold screen compares accuracy
    weak = [0.75]
    # A 1 ms trial at 0.75: only itself could be cheaper; 0.95 at 10 ms does not dominate it.
    assert not pruner.prune_fold(study, weak, cost=1.0)
    # At 3 ms the 2 ms trial at 0.80 is the reference: 5 points behind after one fold.
    assert pruner.prune_fold(study, weak, cost=3.0)
    # Without costs the same scores are judged against the 0.95 trial (the old rule).
    assert FoldTest().should_prune(weak, [0.95], sign=1.0)
    # Inside a fold: the epoch gap (15 points) against the cheaper-or-equal best's same fold.
    curve = [0.30, 0.40]
    assert not pruner.prune_costed(study, 0, 1, curve, cost=1.0)  # nothing cheaper
    assert pruner.prune_costed(study, 0, 1, curve, cost=2.0)  # 0.70 at epoch 1: 30 behind
    assert not pruner.prune_costed(study, 0, 0, curve, cost=2.0)  # warm-up epoch
    assert not pruner.prune_costed(study, 2, 1, curve, cost=50.0)  # the last fold finishes
    for name in ("median", "halving"):
        with pytest.raises(ValueError, match="Pareto front"):
            make_pruner(name, epochs_per_fold=3, n_folds=3, costed=True)


def test_the_front_and_the_point_within_a_limit() -> None:
    study = _costed_study([(0.95, 10.0), (0.80, 2.0), (0.78, 3.0), (0.90, 5.0), (0.90, 7.0)])
    front = pareto_front(study)
    assert [(t.values[0], t.values[1]) for t in front] == [(0.80, 2.0), (0.90, 5.0), (0.95, 10.0)]
    assert best_complete(study).values == [0.95, 10.0]  # no limit: the most accurate
    assert best_complete(study, max_cost=6.0).values == [0.90, 5.0]
    assert best_complete(study, max_cost=1.0) is None
    assert final_candidate(study, "accuracy", 9.99).values == [0.90, 5.0]
    assert _pick_trial(study, None, 2.5).values == [0.80, 2.0]  # search.export --max-latency-ms
    assert _limit(study, 2.5, None) == 2.5
    from search.cli import UsageError

    with pytest.raises(UsageError, match="does not measure params"):
        _limit(study, None, 1000)
    with pytest.raises(UsageError, match="within --max-latency-ms 1"):
        _pick_trial(study, None, 1.0)


def test_export_refuses_two_ways_to_pick_a_trial(tmp_path: Path) -> None:
    url, _ = _fake_study(tmp_path)
    for flags, message in (
        (("--trial", "0", "--max-latency-ms", "3"), "pass one of --trial"),
        (("--max-params", "100"), "does not measure params"),
        (("--max-latency-ms", "0.01"), "no complete trial of study 'mo' is within"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "search.export", "--study", "mo", "--storage", url,
             "--out", str(tmp_path / "m"), *flags],
            cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 2, (flags, out.stderr[-1500:])
        assert message in out.stderr, (flags, out.stderr[-1500:])
        assert not (tmp_path / "m").exists()


def test_report_leads_with_the_front(tmp_path: Path) -> None:
    url, study = _fake_study(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "search.report", "--study", "mo", "--storage", url,
         "--out", str(tmp_path / "r")],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-1500:]
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.index("<h2>Pareto front</h2>") < page.index("<h2>Leaderboard</h2>")
    assert (tmp_path / "r" / "plots" / "pareto.png").stat().st_size > 1000
    for t in pareto_front(study):
        assert f"<td>{t.number}</td><td>{t.values[0]:.4f}</td>" in page


@pytest.mark.slow
def test_a_real_latency_study_and_its_export_within_a_limit(tmp_path: Path, study) -> None:
    """Real training: each trial's latency is measured on its model, and search.export
    --max-latency-ms exports the most accurate trial within it."""
    url = f"sqlite:///{tmp_path / 'real.db'}"
    out = run_cli(
        "--study", "quick", "--data", str(study["data"]), "--storage", url, "--name", "real",
        "--n-trials", "3", "--epochs", "1", "--folds", "2", "--image-size", "32",
        "--pruner", "none", "--objective", "accuracy,latency", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    real = load(url, "real")
    done = real.get_trials(states=(TrialState.COMPLETE,))
    assert done and all(t.values[1] == t.user_attrs["latency_ms"] > 0 for t in done)
    limit = max(t.values[1] for t in done)
    expected = best_complete(real, max_cost=limit)
    export = subprocess.run(
        [sys.executable, "-m", "search.export", "--study", "real", "--storage", url,
         "--out", str(tmp_path / "m"), "--max-latency-ms", str(limit), "--no-tta"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr[-3000:]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["trial"] == expected.number


@pytest.mark.slow
def test_budget_final_model_is_the_fronts_point_within_the_limit_without_views_past_it(
    tmp_path: Path,
) -> None:
    """--budget with --max-latency-ms: the final model trains the most accurate trial within the
    limit, and drops the 8 test-time views that would take it past the limit."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--name", "b", "--n-trials", "8", "--epochs", "2",
        "--objective", "accuracy,latency", "--max-latency-ms", "2.0", "--budget", "60s",
        "--final-augment", "robust", "--symmetry", "dihedral", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(url, "b")
    chosen = best_complete(study, max_cost=2.0)
    assert chosen is not None and chosen.number != best_complete(study).number
    config = json.loads((tmp_path / "models" / "b" / "config.json").read_text())
    assert config["trial"] == chosen.number
    assert config["tta"] == "none"  # 8 views x its latency would pass 2 ms
    assert "no test-time views" in out.stderr
