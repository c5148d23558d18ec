from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.engine.trials import act_on_screen
from search.policy import pruning
from search.policy.pruning import FoldEpochPruner, FoldTest, make_pruner
from search.reporting.fold_epochs import fold_epochs
from search.testing.fake import trained_folds
from storage.records import STARTING_POINT, WARM_START
from tests.search.cli import FAKE_QUICK, load, run_cli


def test_fold_test_prunes_a_clearly_worse_trial_from_its_first_fold() -> None:
    test = FoldTest()
    best = [0.90, 0.91, 0.89, 0.90, 0.92]
    assert test.should_prune([0.70], best, sign=1.0)  # 20 points behind on fold 0
    assert test.should_prune([0.70, 0.72], best, sign=1.0)
    assert not test.should_prune([0.88], best, sign=1.0)  # 2 points: not clearly worse
    assert not test.should_prune([0.86, 0.95], best, sign=1.0)  # fold 1 makes up for it
    assert not test.should_prune([0.89, 0.92], best, sign=1.0)
    assert not FoldTest(min_folds=2).should_prune([0.70], best, sign=1.0)


def test_fold_test_tolerates_a_smaller_mean_gap_as_folds_accumulate() -> None:
    test = FoldTest()  # mean gaps: 3 points after one fold, 2 after two, 1 from the third
    best = [0.90, 0.91, 0.89, 0.90, 0.92]
    behind = [0.875, 0.885, 0.875]  # 2.5, 2.5 and 1.5 points behind
    assert not test.should_prune(behind[:1], best, sign=1.0)  # 2.5 < 3
    assert test.should_prune(behind[:2], best, sign=1.0)  # mean 2.5 > 2
    ahead_then_behind = [0.91, 0.89, 0.86]  # mean gaps -1, 0.5, 1.33 points
    assert not test.should_prune(ahead_then_behind[:2], best, sign=1.0)
    assert test.should_prune(ahead_then_behind, best, sign=1.0)  # 1.33 > 1 from fold 3
    assert not FoldTest(mean_gaps=()).should_prune(behind[:2], best, sign=1.0)
    assert FoldTest(mean_gaps=(0.01,)).should_prune(behind[:1], best, sign=1.0)
    with pytest.raises(ValueError):
        FoldTest(mean_gaps=(0.03, -0.01))


def test_fold_test_uses_wilcoxon_once_there_are_enough_folds() -> None:
    test = FoldTest(min_gap=0.05)
    best = [0.90, 0.91, 0.89, 0.90, 0.92]
    slightly_worse = [0.893, 0.902, 0.883, 0.893]  # every fold worse, by < every mean gap
    assert not test.should_prune(slightly_worse[:3], best, sign=1.0)  # p = 0.125
    assert test.should_prune(slightly_worse, best, sign=1.0)  # p = 0.0625 < 0.1
    assert not test.should_prune(slightly_worse, best, sign=-1.0)
    near_tie = [b - 0.001 for b in best[:4]]  # worse on every fold, by a tenth of a point
    assert not test.should_prune(near_tie, best, sign=1.0)


def test_fold_test_validates_its_arguments() -> None:
    with pytest.raises(ValueError):
        FoldTest(p_threshold=0)


def test_steps_encode_fold_and_epoch_without_collisions() -> None:
    pruner = make_pruner("default", epochs_per_fold=4, n_folds=5)
    assert isinstance(pruner, FoldEpochPruner)
    steps = {pruner.split_step(fold * 4 + epoch) for fold in range(5) for epoch in range(4)}
    assert len(steps) == 20 and pruner.split_step(9) == (2, 1)
    assert make_pruner("none", epochs_per_fold=4, n_folds=5) is None
    with pytest.raises(ValueError, match="not one of"):
        make_pruner("hyperband9", epochs_per_fold=4, n_folds=5)


def _finished(pruner, values, steps: int, folds: int = 0) -> optuna.Study:
    """A study holding one complete trial per value, each reporting that value at every step
    (and, given ``folds``, scoring that value on every fold)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for value in values:
        t = study.ask()
        for step in range(steps):
            t.report(value, step)
        if folds:
            t.set_user_attr("fold_scores", [value] * folds)
        study.tell(t, value)
    return study


def test_epoch_pruner_never_prunes_a_fold_s_first_epoch() -> None:
    study = _finished(make_pruner("median", epochs_per_fold=3, n_folds=3), (0.9, 0.91, 0.92), 9)
    bad = study.ask()
    bad.report(0.1, 3)  # fold 1, epoch 0: warm-up, not judged
    assert not bad.should_prune()
    bad.report(0.1, 4)  # fold 1, epoch 1: far below the median
    assert bad.should_prune()


def test_default_pruner_never_judges_the_first_half_of_a_fold() -> None:
    """Slow starters (Ranger's warm-up, large learning rates) trail early and then win."""
    pruner = make_pruner("default", epochs_per_fold=6, n_folds=3)
    study = _finished(pruner, (0.8, 0.81, 0.82), 18, folds=3)
    slow = study.ask()
    for epoch in range(3):  # fold 0, epochs 0-2: far behind, but inside the warm-up
        slow.report(0.3, epoch)
        assert not slow.should_prune()
    slow.report(0.3, 3)  # epoch 3 of 6: judged
    assert slow.should_prune()


def test_a_trial_that_trained_its_last_fold_is_never_pruned() -> None:
    """Stopping it saves nothing; telling it PRUNED would throw away a finished CV score."""
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=2)
    assert isinstance(pruner, FoldEpochPruner)
    study = _finished(pruner, (0.9, 0.91, 0.92), 6, folds=2)
    bad = study.ask()
    bad.report(0.5, 1)  # fold 0, epoch 1: judged, 42 points behind the best trial
    assert bad.should_prune()
    last = study.ask()
    for step in (4, 5):  # the last fold (early stopping may end it at epoch 1): never judged
        last.report(0.5, step)
        assert not last.should_prune()
    median = _finished(make_pruner("median", epochs_per_fold=3, n_folds=2), (0.9, 0.91, 0.92), 6)
    slow = median.ask()
    slow.report(0.1, 4)
    assert not slow.should_prune()
    worse = [0.5, 0.5]  # every fold > min_gap below the best trial's
    assert pruner.prune_fold(study, worse[:1])  # 1 of 2 folds, clearly worse: stopped
    three = make_pruner("default", epochs_per_fold=3, n_folds=3)
    assert isinstance(three, FoldEpochPruner)
    assert three.prune_fold(study, worse)  # 2 of 3 folds: a clearly worse trial is stopped
    assert not pruner.prune_fold(study, worse)  # 2 of 2 folds: finished, told COMPLETE


def test_default_inside_a_fold_stops_only_a_trial_far_behind_the_best() -> None:
    """Below every finished trial but within 15 points of the best: a slow starter may still win,
    so it goes on (to be judged on its fold-end score); the median pruner stops it."""
    values = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92]
    for name, pruned in (("default", False), ("median", True)):
        study = _finished(make_pruner(name, epochs_per_fold=4, n_folds=2), values, 8, folds=2)
        slow = study.ask()
        for step in range(3):
            slow.report(0.78, step)  # below all of them, 14 points behind the best
        assert slow.should_prune() is pruned, name
    study = _finished(make_pruner("default", epochs_per_fold=4, n_folds=2), values, 8, folds=2)
    bad = study.ask()
    for step in range(3):
        bad.report(0.76, step)  # 16 points behind
    assert bad.should_prune()


def _screened_trial(study: optuna.Study, pruner: FoldEpochPruner, fold0: float) -> bool:
    """Ask a trial, give it one finished fold scoring ``fold0``; whether the screen stops it."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("fold_scores", [fold0])
    stopped = act_on_screen(study, trial, pruner.screen_fold(study, trial, [fold0]))
    study.tell(trial, state=optuna.trial.TrialState.PRUNED) if stopped else study.tell(trial, fold0)
    return stopped


def test_screen_stops_the_first_trials_after_one_fold_and_queues_the_best_again() -> None:
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=20)
    assert isinstance(pruner, FoldEpochPruner) and (pruner.screen, pruner.screen_max) == (3, 4)
    study = optuna.create_study(direction="maximize")
    assert [_screened_trial(study, pruner, s) for s in (0.60, 0.80, 0.70)] == [True] * 3
    assert not study.get_trials(states=(TrialState.WAITING,))  # a 4th may still beat them
    assert _screened_trial(study, pruner, 0.80)  # a tie does not beat the best: screened
    screened = [t for t in study.trials if t.user_attrs.get(pruning.SCREENED)]
    assert [t.number for t in screened] == [0, 1, 2, 3]
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(queued) == 1 and queued[0].user_attrs[pruning.PROMOTED_FROM] == 1  # best, earliest
    promoted = study.ask()
    assert promoted.number == 4
    assert promoted.suggest_float("x", 0, 1) == study.trials[1].params["x"]  # the same point
    assert not act_on_screen(study, promoted, pruner.screen_fold(study, promoted, [0.80]))
    study.tell(promoted, 0.8)
    assert not _screened_trial(study, pruner, 0.50)  # the screen is over: a trial completed


def test_queued_configurations_are_not_screened_and_the_sampled_ones_are() -> None:
    """The portfolio's and --warm-start's configurations finish (one fold is too noisy to drop
    a configuration chosen to be good on); trials the sampler draws are screened as before."""
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=20)
    assert isinstance(pruner, FoldEpochPruner)
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for attrs in ({STARTING_POINT: True}, {WARM_START: "first#3"}):
        study.enqueue_trial({"x": 0.5}, user_attrs=attrs)
        queued = study.ask(dist)
        queued.set_user_attr("fold_scores", [0.6])
        decision = pruner.screen_fold(study, queued, [0.6])
        assert not decision.stop and decision.tag is None, decision
        study.tell(queued, state=TrialState.FAIL)  # nothing completes: the screen is not over
    assert [_screened_trial(study, pruner, s) for s in (0.60, 0.80, 0.70)] == [True] * 3


def _unfinished_screen(study: optuna.Study, pruner: FoldEpochPruner, fold0: float) -> bool:
    """Like ``_screened_trial``, but a trial the screen lets go on fails (nothing completes)."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("fold_scores", [fold0])
    stopped = act_on_screen(study, trial, pruner.screen_fold(study, trial, [fold0]))
    study.tell(trial, state=TrialState.PRUNED if stopped else TrialState.FAIL)
    return stopped


def test_a_trial_that_beats_the_screen_goes_on_and_ends_it_without_a_promotion() -> None:
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=20)
    assert isinstance(pruner, FoldEpochPruner)
    study = optuna.create_study(direction="maximize")
    assert [_screened_trial(study, pruner, s) for s in (0.60, 0.80, 0.70)] == [True] * 3
    winner = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    winner.set_user_attr("fold_scores", [0.81])
    decision = pruner.screen_fold(study, winner, [0.81])  # beats every screened first fold
    assert decision == pruning.ScreenDecision(
        False, "its first fold beat every screened one", pruning.BEAT_SCREEN
    )
    assert pruning.BEAT_SCREEN not in study.trials[3].user_attrs  # the policy only decides
    assert not act_on_screen(study, winner, decision)
    assert study.trials[3].user_attrs.get(pruning.BEAT_SCREEN) and not study.trials[
        3
    ].user_attrs.get(pruning.SCREENED)
    # While it is still running, later trials are no longer screened, and nothing is queued.
    assert not _unfinished_screen(study, pruner, 0.5)
    assert not study.get_trials(states=(TrialState.WAITING,))
    # If it fails for good (or is stopped), the screen goes on: the next trial is screened, and
    # as the 4th the best first fold is queued. A queued retry of it keeps the screen over.
    study.tell(winner, state=TrialState.FAIL)
    study.enqueue_trial({"x": 0.5}, user_attrs={"retry_of": 3})
    retry = study.ask()  # running again
    assert retry.user_attrs.get("retry_of") == 3
    assert not _unfinished_screen(study, pruner, 0.45)  # not screened: the retry is alive
    study.tell(retry, state=TrialState.FAIL)
    assert _screened_trial(study, pruner, 0.5)
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs[pruning.PROMOTED_FROM] == 1
    # Minimising (a loss), beating means lower; the screen may also wait for more trials.
    lower = FoldEpochPruner(
        epochs_per_fold=3, epoch_pruner=None, fold_test=None, screen=2, screen_max=5
    )
    study = optuna.create_study(direction="minimize")
    assert [_screened_trial(study, lower, s) for s in (0.3, 0.2, 0.25, 0.2)] == [True] * 4
    assert not _screened_trial(study, lower, 0.1)
    assert not study.get_trials(states=(TrialState.WAITING,))
    with pytest.raises(ValueError, match="screen_max"):
        FoldEpochPruner(
            epochs_per_fold=3, epoch_pruner=None, fold_test=None, screen=3, screen_max=2
        )


def test_screen_is_off_for_short_studies_single_folds_and_minimising_picks_the_lowest() -> None:
    assert make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=9).screen == 0
    assert make_pruner("median", epochs_per_fold=3, n_folds=5, n_trials=50).screen == 0
    assert make_pruner("default", epochs_per_fold=3, n_folds=1, n_trials=50).screen == 0
    assert make_pruner("fold", epochs_per_fold=3, n_folds=5).screen == 3  # no trial limit
    # The second worker's trial is running when the first finishes: no room left at 10.
    assert make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=10).screen == 3
    assert make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=10, workers=2).screen == 0
    with pytest.raises(ValueError, match="screen"):
        FoldEpochPruner(epochs_per_fold=3, epoch_pruner=None, fold_test=None, screen=1)
    pruner = FoldEpochPruner(epochs_per_fold=3, epoch_pruner=None, fold_test=None, screen=2)
    study = optuna.create_study(direction="minimize")  # e.g. a loss: lower is better
    assert _screened_trial(study, pruner, 0.3) and _screened_trial(study, pruner, 0.2)
    (queued,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert queued.user_attrs[pruning.PROMOTED_FROM] == 1
    assert not _screened_trial(study, pruner, 0.1)  # two screened already, one queued


def test_screen_does_not_start_in_a_study_that_already_has_a_result() -> None:
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=20)
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.5},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            value=0.7,
            user_attrs={"fold_scores": [0.7] * 5},
        )
    )
    assert not _screened_trial(study, pruner, 0.71)


def test_cli_screens_the_first_trials_then_finishes_the_best_reusing_its_first_fold(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    log = tmp_path / "trained.txt"
    # the sampler's own trials: the portfolio's are not screened
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "12", "--no-portfolio", cwd=tmp_path,
        timeout=300, FAKE_TRAINED_LOG=str(log),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    trials = load(url, "quick").trials
    screened = [t for t in trials if t.user_attrs.get(pruning.SCREENED)]
    # With this seed the 4th trial's first fold does not beat the first three's: screened too.
    assert [t.number for t in screened] == [0, 1, 2, 3]
    first = [t.user_attrs["fold_scores"][0] for t in screened]
    assert first[3] <= max(first[:3]) and not any(
        pruning.BEAT_SCREEN in t.user_attrs for t in trials
    )
    for t in screened:
        assert t.state == TrialState.PRUNED and "screening" in t.user_attrs["pruned_at"]
        assert [k for k in t.user_attrs if k.startswith("fold_") and k[5:].isdigit()] == ["fold_0"]
    best = max(screened, key=lambda t: t.user_attrs["fold_scores"][0])
    (promoted,) = [t for t in trials if pruning.PROMOTED_FROM in t.user_attrs]
    assert promoted.number == 4 and promoted.user_attrs[pruning.PROMOTED_FROM] == best.number
    assert promoted.state == TrialState.COMPLETE and promoted.params == best.params
    assert promoted.user_attrs["reused_folds"] == [0]
    assert promoted.user_attrs["fold_0"] == best.user_attrs["fold_0"]
    # Not trained again: its configuration's fold 0 was trained once (when screened), and the
    # promotion trained folds 1 and 2 only.
    assert sorted(trained_folds(log, best.params["learning_rate"])) == [0, 1, 2]
    assert len(promoted.user_attrs["fold_scores"]) == 3
    # Its record shows all 3 folds x 4 epochs; the report counts the 8 fold-epochs it trained.
    assert len(promoted.intermediate_values) == 12 and fold_epochs(promoted) == 8
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 12


def test_screen_queues_a_promotion_that_a_stopped_coordinator_never_queued() -> None:
    pruner = make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=20)
    assert isinstance(pruner, FoldEpochPruner)
    study = optuna.create_study(direction="maximize")
    longer = FoldEpochPruner(epochs_per_fold=3, epoch_pruner=None, fold_test=None, screen=5)
    for fold0 in (0.6, 0.9, 0.7, 0.8):  # four screened, and no promotion queued (as after a kill)
        assert _screened_trial(study, longer, fold0)
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert not _screened_trial(study, pruner, 0.95)  # not screened, and the best is queued
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs[pruning.PROMOTED_FROM] == 1


def test_default_stops_a_trial_far_behind_the_best_trial_in_the_same_fold() -> None:
    """After half a fold, 15 points behind the best trial's (by objective) best over the same
    epochs of the same fold stops a trial."""
    pruner = make_pruner("default", epochs_per_fold=6, n_folds=3)
    assert isinstance(pruner, FoldEpochPruner) and pruner.epoch_gap == pruning.EPOCH_GAP
    study = optuna.create_study(direction="maximize", pruner=pruner)
    curves = {0: [0.3, 0.4, 0.5, 0.55, 0.85, 0.85], 1: [0.7, 0.8, 0.85, 0.9, 0.9, 0.9]}
    higher = {fold: [0.99] * 6 for fold in curves}  # higher curves, but a worse trial
    for value, trial_curves in ((0.82, curves), (0.6, higher)):
        t = study.ask()
        for fold, curve in trial_curves.items():
            for epoch, acc in enumerate(curve):
                t.report(acc, fold * 6 + epoch)
        t.set_user_attr("fold_scores", [max(c) for c in trial_curves.values()] + [0.9])
        study.tell(t, value)

    def behind(fold: int, values: list[float]) -> list[bool]:
        t = study.ask()
        decisions = []
        for epoch, value in enumerate(values):
            t.report(value, fold * 6 + epoch)
            decisions.append(t.should_prune())
        return decisions

    # Fold 1: the best trial had 0.85 by epoch 2 and 0.9 by epoch 3.
    assert behind(1, [0.5, 0.6, 0.7, 0.74]) == [False, False, False, True]  # 16 points at epoch 3
    assert behind(1, [0.5, 0.6, 0.7, 0.76]) == [False, False, False, False]  # 14 points
    assert behind(1, [0.5, 0.8, 0.7, 0.7]) == [False] * 4  # its best in the fold so far counts
    # Fold 0 is compared with the best trial's fold 0 up to the same epoch (0.55 by epoch 3), not
    # with its best fold (0.9) or its fold score (0.85).
    assert behind(0, [0.2, 0.3, 0.35, 0.45]) == [False] * 4
    assert behind(0, [0.2, 0.3, 0.35, 0.38]) == [False, False, False, True]
    # Only the default has the rule; the fold-level-only pruner never stops inside a fold.
    fold_only = make_pruner("fold", epochs_per_fold=6, n_folds=3)
    assert isinstance(fold_only, FoldEpochPruner) and fold_only.epoch_gap == 0
    study.pruner = fold_only
    assert behind(1, [0.1, 0.1, 0.1, 0.1]) == [False] * 4
    with pytest.raises(ValueError, match="epoch_gap"):
        FoldEpochPruner(epochs_per_fold=6, epoch_pruner=None, fold_test=None, epoch_gap=-0.1)


def test_screen_covers_retries_and_a_failed_screened_trial_is_not_rerun() -> None:
    from search.engine.recovery import requeue

    pruner = make_pruner("default", epochs_per_fold=3, n_folds=5, n_trials=20)
    assert isinstance(pruner, FoldEpochPruner)
    study = optuna.create_study(direction="maximize")
    assert _screened_trial(study, pruner, 0.6)
    # A trial interrupted during its first fold is re-run from scratch (no fold to re-use): its
    # first fold is screened like any other.
    retry = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    retry.set_user_attr("retry_of", 0)
    retry.set_user_attr("fold_scores", [0.7])
    assert act_on_screen(study, retry, pruner.screen_fold(study, retry, [0.7]))
    # A screened trial whose coordinator died after the screen stopped it is not re-queued.
    retry.set_user_attr("failure_kind", "interrupted")
    study.tell(retry, state=TrialState.FAIL)
    assert requeue(study) == []
    assert _screened_trial(study, pruner, 0.5)
    assert _screened_trial(study, pruner, 0.55)  # the fourth: the best first fold is queued
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs[pruning.PROMOTED_FROM] == retry.number
