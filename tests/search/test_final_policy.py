"""The final model's recipe: one pure decision, its augmentation earned by the paired check."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from search.engine.finish import run_check
from search.policy import final
from search.policy.final import RecipeCheck, RecipeInputs, paired_check
from search.reporting import scores
from trainer import final as trainer_final
from trainer.config import TrialConfig
from trainer.folds import make_folds
from trainer.records import Dataset


def _check(gain: float, se: float) -> RecipeCheck:
    return RecipeCheck("none", "robust", 8, 16, 400, 0.9, 0.6, 0.9, 0.8, gain, se, 30.0)


def test_the_candidate_is_taken_only_when_the_check_shows_it_ahead() -> None:
    assert final.final_augment("auto", "none", _check(0.05, 0.01)) == (
        "robust",
        f"robust ({_check(0.05, 0.01).describe()})",
    )
    level, why = final.final_augment("auto", "none", _check(0.005, 0.01))
    assert level == "none" and "not taken" in why
    assert final.final_augment("auto", "robust", None)[0] == "robust"  # nothing to check
    assert final.final_augment("searched", "light", None)[0] == "light"
    assert final.final_augment("heavy", "light", None)[0] == "heavy"
    assert final.needs_check("auto", "light") and not final.needs_check("robust", "light")
    assert not final.needs_check("auto", "robust")


def test_the_paired_check_scores_clean_and_corrupted_per_image() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    searched = (labels.copy(), 1 - labels)  # clean all right, corrupted all wrong
    candidate = (labels.copy(), labels.copy())  # both right
    check = paired_check(
        "light", "robust", 6, labels, {"light": searched, "robust": candidate}, 1.0, 12
    )
    assert (check.searched_clean, check.searched_corrupted) == (1.0, 0.0)
    assert (check.candidate_clean, check.candidate_corrupted) == (1.0, 1.0)
    assert check.gain == 0.5 and check.standard_error == 0.0 and check.taken
    tie = paired_check(
        "light", "robust", 6, labels, {"light": searched, "robust": searched}, 1.0, 12
    )
    assert tie.gain == 0.0 and not tie.taken  # a tie keeps the trial's own recipe


def test_views_size_tail_and_progressive_follow_the_data() -> None:
    assert final.views_for("robust", "none", None) == "none"
    assert final.views_for("robust", "mirror", None) == "mirror"
    assert final.views_for("robust", "dihedral", False) == "none"
    assert final.views_for("none", "dihedral", None) == "none"
    assert final.final_size(28, 64, False) == 64  # never below the search's size
    assert final.final_size(96, 64, False) == 96 and final.final_size(96, 64, True) == 64
    fid = RecipeInputs(64, 96, 4, 1000, 1500, "accuracy", augment="robust", symmetry="mirror")
    recipe = final.decide(fid, "light", [], max_seconds=None)
    assert recipe.augment == "robust" and recipe.tail == (final.TAIL_LEVEL, final.TAIL_SHARE)
    assert recipe.progressive == (64, final.PROGRESSIVE_SHARE) and recipe.views == "mirror"
    same = final.decide(
        RecipeInputs(64, 64, 4, 1000, 1500, "accuracy", augment="searched", symmetry="none"),
        "light",
        [],
        max_seconds=None,
    )
    assert same.augment == "light" and same.tail is None and same.progressive is None
    assert same.views == "none"


def test_the_paired_check_trains_the_candidate_for_the_epochs_it_is_given(monkeypatch) -> None:
    """run_check gives the candidate twice the trial level's epochs unless told otherwise, and
    its record says how many it had (bench/final_check.py --candidate-epochs)."""
    trained: dict[str, int] = {}

    def fit_all(config, data, epochs, **_):
        trained[config.augment] = epochs
        return SimpleNamespace(model=None)

    monkeypatch.setattr(trainer_final, "fit_all", fit_all)
    monkeypatch.setattr(
        scores, "predict_probs", lambda _m, x, **_: np.eye(2)[np.zeros(len(x), int)]
    )
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 2
    data = Dataset(rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8), labels, ("a", "b"))
    fold = make_folds(labels, 2, 0)[0]
    cfg = TrialConfig(backbone="small_cnn", image_size=32, augment="light", epochs=8)
    assert run_check(cfg, data, fold, 8).candidate_epochs == 16
    assert trained == {"light": 8, "robust": 16}
    assert run_check(cfg, data, fold, 8, candidate_epochs=8).candidate_epochs == 8
    assert trained == {"light": 8, "robust": 8}
    with pytest.raises(ValueError, match="candidate_epochs=0"):
        run_check(cfg, data, fold, 8, candidate_epochs=0)
