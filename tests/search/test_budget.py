"""The --budget arithmetic: durations, convergence from learning curves, the final model's plan."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from search.engine.finish import SPENT, BudgetClock, RecipeInputs
from search.policy.budget import (
    FILL_EPOCH_FACTOR,
    MAX_EPOCH_FACTOR,
    MAX_FINAL_SHARE,
    MIN_FINAL_SHARE,
    PRIOR_FINAL_SHARE,
    epochs_to_converge,
    final_reserve,
    parse_duration,
    plan_final,
    saturating_fit,
)
from trainer.records import EpochMetrics, FoldResult


@pytest.mark.parametrize(
    "text, seconds", [("30m", 1800), ("90s", 90), ("1.5h", 5400), ("600", 600), (" 2M ", 120)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0", "3d", "1m30"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _fold(curve, *, seconds_per_epoch=2.0, first=10.0, k=0) -> FoldResult:
    epochs = tuple(
        EpochMetrics(e, a, a, a, a, a, 1 - a, 1 - a, 1e-3, seconds_per_epoch)
        for e, a in enumerate(curve)
    )
    best = int(np.argmax(curve))
    n = len(curve)
    return FoldResult(k, epochs, best, False, False, first + (n - 1) * seconds_per_epoch, first)


def test_the_fit_recovers_a_saturating_curve() -> None:
    e = np.arange(1, 9)
    curve = 0.95 - 0.4 * np.exp(-e / 3.0)
    a, b, tau = saturating_fit(curve)
    assert a == pytest.approx(0.95, abs=0.01) and tau == pytest.approx(3.0, rel=0.1)


def test_a_curve_still_rising_gets_more_epochs_than_the_search_gave() -> None:
    e = np.arange(1, 5)
    rising = [_fold(0.95 - 0.4 * np.exp(-e / 4.0), k=k) for k in range(3)]
    epochs, reason = epochs_to_converge(rising, "accuracy", search_epochs=4)
    assert epochs > 4 and "plateau" in reason
    assert epochs <= MAX_EPOCH_FACTOR * 4


def test_a_stronger_final_augmentation_gets_more_epochs_and_says_why() -> None:
    e = np.arange(1, 5)
    rising = [_fold(0.95 - 0.4 * np.exp(-e / 4.0), k=k) for k in range(3)]
    same, why_same = epochs_to_converge(rising, "accuracy", search_epochs=4)
    other, why = epochs_to_converge(rising, "accuracy", search_epochs=4, factor=2.0)
    assert other == 2 * same and "x2 for the stronger final augmentation" in why
    assert "augmentation" not in why_same
    empty = FoldResult(0, (), 0, False, False, 0.0, 0.0)
    no_curve, _ = epochs_to_converge([empty], "accuracy", search_epochs=4, factor=2.0)
    assert no_curve == 8


def test_a_curve_that_plateaued_early_gets_few_epochs() -> None:
    flat = [_fold([0.80, 0.90, 0.91, 0.91, 0.91, 0.905, 0.91, 0.91], k=k) for k in range(3)]
    epochs, _ = epochs_to_converge(flat, "accuracy", search_epochs=8)
    rising = [_fold(list(0.95 - 0.5 * np.exp(-np.arange(1, 9) / 6.0)), k=k) for k in range(3)]
    longer, _ = epochs_to_converge(rising, "accuracy", search_epochs=8)
    assert epochs < longer


def test_the_plan_prices_epochs_by_pixels_and_images_and_cuts_to_fit() -> None:
    folds = [_fold(list(0.95 - 0.4 * np.exp(-np.arange(1, 5) / 4.0)), seconds_per_epoch=2.0)]
    free = plan_final(
        folds, metric="accuracy", search_epochs=4, search_size=64, final_size=96,
        train_images_per_fold=1000, all_images=1500,
    )  # fmt: skip
    # 2 s an epoch for 1,000 images at 64 px -> 1,500 images at 96 px: 2 * 1.5 * 2.25.
    assert free.seconds_per_epoch == pytest.approx(2 * 1.5 * (96 / 64) ** 2)
    tight = plan_final(
        folds, metric="accuracy", search_epochs=4, search_size=64, final_size=96,
        train_images_per_fold=1000, all_images=1500, max_seconds=free.seconds / 2,
    )  # fmt: skip
    assert tight.epochs < free.epochs and tight.seconds <= free.seconds / 2 + 1e-6
    assert "cut from" in tight.reason


def test_a_progressive_final_model_is_priced_by_the_pixels_of_each_part() -> None:
    folds = [_fold(list(0.95 - 0.4 * np.exp(-np.arange(1, 5) / 4.0)), seconds_per_epoch=2.0)]
    common = dict(
        metric="accuracy", search_epochs=4, search_size=64, train_images_per_fold=1000,
        all_images=1500, max_seconds=150.0, fill=True,
    )  # fmt: skip
    full = plan_final(folds, **common, final_size=96)
    mixed = plan_final(folds, **common, final_size=96, progressive_size=64, progressive_share=0.5)
    ratio = 0.5 * (64 / 96) ** 2 + 0.5
    assert mixed.seconds_per_epoch == pytest.approx(ratio * full.seconds_per_epoch)
    assert mixed.epochs > full.epochs  # the same time holds more epochs
    assert "(the first 50% at 64px)" in mixed.describe() and "64px" not in full.describe()
    same = plan_final(folds, **common, final_size=64, progressive_size=64, progressive_share=0.5)
    assert same.progressive_share == 0.0 and same.seconds_per_epoch == pytest.approx(2 * 1.5)


def test_filling_the_time_grows_epochs_up_to_the_cap_never_below_the_curves() -> None:
    folds = [_fold(list(0.95 - 0.4 * np.exp(-np.arange(1, 5) / 4.0)), seconds_per_epoch=2.0)]
    common = dict(
        metric="accuracy", search_epochs=4, search_size=64, final_size=64,
        train_images_per_fold=1000, all_images=1000,
    )  # fmt: skip
    needed = plan_final(folds, **common)
    roomy = plan_final(folds, **common, max_seconds=4 * needed.seconds, fill=True)
    assert needed.epochs < roomy.epochs <= roomy.max_epochs == FILL_EPOCH_FACTOR * 4
    assert roomy.seconds <= 4 * needed.seconds + 1e-6 and "to use the time kept" in roomy.reason
    huge = plan_final(folds, **common, max_seconds=1e6, fill=True, epoch_factor=2.0)
    assert huge.epochs == huge.max_epochs == 2 * FILL_EPOCH_FACTOR * 4
    unfilled = plan_final(folds, **common, max_seconds=1e6)
    assert unfilled.epochs == needed.epochs


def test_the_reserve_stays_within_its_shares() -> None:
    assert final_reserve(1000, None) == PRIOR_FINAL_SHARE * 1000
    folds = [_fold([0.5, 0.6, 0.7, 0.8], seconds_per_epoch=0.001)]
    cheap = plan_final(
        folds, metric="accuracy", search_epochs=4, search_size=64, final_size=64,
        train_images_per_fold=100, all_images=100,
    )  # fmt: skip
    assert final_reserve(10_000, cheap) == MIN_FINAL_SHARE * 10_000
    dear = plan_final(
        [_fold([0.5, 0.6, 0.7, 0.8], seconds_per_epoch=500)], metric="accuracy",
        search_epochs=4, search_size=64, final_size=96, train_images_per_fold=100,
        all_images=150,
    )  # fmt: skip
    assert final_reserve(1000, dear) == MAX_FINAL_SHARE * 1000


def test_the_clock_counts_earlier_runs_and_replans_for_a_new_best() -> None:
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(SPENT, 100.0)
    now = [0.0]
    inputs = RecipeInputs(64, 96, 4, 1000, 1500, "accuracy")
    clock = BudgetClock(study, 1000.0, inputs, clock=lambda: now[0])
    assert clock.left() == pytest.approx(900.0)
    assert clock.search_left() == pytest.approx(900 - PRIOR_FINAL_SHARE * 1000)
    now[0] = 50.0
    trial = study.ask()
    fold = _fold(list(0.95 - 0.4 * np.exp(-np.arange(1, 5) / 4.0)), seconds_per_epoch=20.0)
    trial.set_user_attr("fold_0", fold.to_dict())
    trial.set_user_attr("config", {})
    study.tell(trial, 0.9)
    left = clock.search_left()
    assert clock.plan is not None and clock.plan.seconds > 0
    assert left == pytest.approx(850 - final_reserve(1000, clock.plan))
    assert math.isclose(study.user_attrs[SPENT], 150.0)  # recorded at the 15 s mark


def _budget_run(tmp_path):
    """Through the real CLI: the fake trainer searches, the final model trains for real."""
    import json

    from storage.study import FINAL_RECIPE
    from tests.search.cli import FAKE_QUICK, dashboard_note, load, run_cli

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = (
        *FAKE_QUICK,
        *("--storage", url, "--n-trials", "6", "--epochs", "2", "--budget", "90s"),
        *("--final-augment", "robust", "--symmetry", "dihedral"),
    )
    out = run_cli(*args, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = tmp_path / "models" / "quick"
    from search.export import FILES

    assert all((folder / name).is_file() for name in FILES)
    config = json.loads((folder / "config.json").read_text())
    study = load(url, "quick")
    assert config["trial"] == study.best_trial.number and config["image_size"] == 32
    searched = study.best_trial.user_attrs["config"]["augment"]
    assert config["config"]["augment"] == "robust"  # --final-augment robust: no paired check
    assert config["recipe"]["check"] is None and config["recipe"]["augment"] == "robust"
    assert config["tta"] == "dihedral"  # robust under --symmetry dihedral: 8 views averaged
    assert config["symmetry"] == "dihedral" and "declared" in config["symmetry_reason"]
    # The last TAIL_SHARE of the epochs (at least one) is trained under light augmentation: from
    # the first epoch that falls in the tail of the plan in force when it began (the deadline
    # re-plans from the run's own epoch times, so the count is read from the plans, not assumed).
    epochs = json.loads((folder / "history.json").read_text())["runs"][0]["epochs"]
    assert [e["augment"] for e in epochs] == tail_levels(epochs, "robust")
    # the run ends in the tail, unless the deadline cut the plan short after its last epoch
    assert epochs[-1]["augment"] == "light" or epochs[-1]["planned"] > len(epochs)
    if searched != "robust":
        assert f"the trial searched {searched}" in (folder / "report.md").read_text()
    rates = config["learning_rates"]
    assert len(rates) == config["epochs"] and rates == sorted(rates, reverse=True)  # cosine
    assert "chosen by --budget" in (folder / "report.md").read_text()
    assert f"model: {folder.relative_to(tmp_path)}" in out.stdout
    assert study.user_attrs[SPENT] > 0
    # The study records what the user got, and the dashboard's note leads with it.
    recorded = study.user_attrs[FINAL_RECIPE]
    assert recorded["folder"] == str(folder.resolve()) and recorded["trial"] == config["trial"]
    assert recorded["image_size"] == config["image_size"] and recorded["epochs"] == config["epochs"]
    assert recorded["backbone"] == config["config"]["backbone"]
    assert (recorded["symmetry"], recorded["colour"]) == (config["symmetry"], config["colour"])
    assert recorded["cv_score"] == config["value"]  # the number report.md states
    # The export is calibrated on images held back from it, and the study records the evidence.
    assert recorded["trust"] == config["trust"]
    assert "missing" not in config["trust"] and (folder / "trust.npz").is_file()
    assert f"**{config['value']:.4f}**, the mean over the" in (folder / "report.md").read_text()
    note = dashboard_note(url, "quick")
    assert note.startswith("## Final model") and f"| folder | {folder.resolve()} |" in note
    return url, args, study


def tail_levels(epochs: list[dict], level: str) -> list[str]:
    """The levels the tail rule gives each recorded epoch: ``level`` until the first epoch
    inside the light tail of the plan in force when it began, then light to the end."""
    from search.policy.final import TAIL_LEVEL, TAIL_SHARE
    from trainer.final import Tail

    tail, out, switched = Tail(TAIL_LEVEL, TAIL_SHARE), [], False
    for e in epochs:
        switched = switched or e["epoch"] >= e["planned"] - tail.epochs(e["planned"])
        out.append(TAIL_LEVEL if switched else level)
    return out


@pytest.mark.slow  # over a minute each: the default run keeps under ~15 minutes
def test_one_budget_command_searches_then_exports_the_final_model(tmp_path) -> None:
    _budget_run(tmp_path)


@pytest.mark.slow
def test_a_resumed_budget_run_counts_what_was_spent_and_trains_the_model_again(tmp_path) -> None:
    import json

    from tests.search.cli import load, run_cli

    url, args, study = _budget_run(tmp_path)
    searched = study.best_trial.user_attrs["config"]["augment"]
    spent = study.user_attrs[SPENT]
    assert spent > 0
    # The very same command after it finished: nothing to do, the model handed over is kept.
    written = (tmp_path / "models" / "quick" / "config.json").stat().st_mtime_ns
    same = run_cli(*args, cwd=tmp_path, timeout=600)
    assert same.returncode == 0, same.stderr[-3000:]
    assert "kept: this study already spent" in same.stdout and "Nothing to do" in same.stdout
    assert (tmp_path / "models" / "quick" / "config.json").stat().st_mtime_ns == written
    assert len(load(url, "quick").trials) == len(study.trials)
    # Resuming counts what was spent: the study is full, so it only trains the model again.
    again = run_cli(
        *args, "--export", str(tmp_path / "again"), "--final-augment", "searched", "--no-tta",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    kept = json.loads((tmp_path / "again" / "config.json").read_text())
    assert kept["config"]["augment"] == searched and kept["tta"] == "none"
    assert load(url, "quick").user_attrs[SPENT] > spent
    assert (tmp_path / "again" / "config.json").is_file()
    assert len(load(url, "quick").trials) == len(study.trials)


@pytest.mark.slow  # over a minute each: the default run keeps under ~15 minutes
def test_a_final_model_larger_than_the_search_starts_at_the_searchs_size(
    tmp_path, real_arrays
) -> None:
    """Real images at 80 px, searched at the quick space's 64 px: the final model trains at
    80 px, its first epochs (about half) at 64 px, and the log and report say so."""
    import json

    from search.data.images import resize_all
    from tests.conftest import stratified_subset
    from tests.search.cli import load, run_cli

    cells = stratified_subset(real_arrays, 160)
    data = tmp_path / "cells80.npz"
    np.savez(
        data, images=resize_all(cells.images, 80), labels=cells.labels,
        class_names=np.array(cells.class_names),
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        "--study", "quick", "--data", str(data), "--trainer", "fake", "--storage", url,
        "--n-trials", "3", "--epochs", "2", "--budget", "60s", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    folder = tmp_path / "models" / "quick"
    config = json.loads((folder / "config.json").read_text())
    assert config["image_size"] == 80 and load(url, "quick").best_trial.params
    history = json.loads((folder / "history.json").read_text())["runs"][0]["epochs"]
    sizes = [e["size"] for e in history]
    low = sizes.count(64)
    assert history[0]["planned"] < 2 or low >= 1, sizes  # a deadline may plan fewer epochs
    # 64 px until the first epoch past PROGRESSIVE_SHARE of the plan in force when it began
    from search.policy.final import PROGRESSIVE_SHARE
    from trainer.final import Progressive

    share = Progressive(64, PROGRESSIVE_SHARE)
    switched = [False]
    for e in history:
        switched.append(switched[-1] or e["epoch"] >= share.epochs(e["planned"]))
    assert sizes == [80 if s else 64 for s in switched[1:]], sizes
    assert "the first 50% of the epochs at 64px" in (folder / "report.md").read_text()
    assert "(the first 50% at 64px)" in out.stderr
    import keras

    model = keras.models.load_model(folder / "model.keras")
    assert model.input_shape[1:3] == (80, 80)
    probs = model.predict(resize_all(cells.images[:4], 80).astype(np.float32), verbose=0)
    assert probs.shape == (4, 8) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_export_without_budget_is_a_usage_error(tmp_path) -> None:
    from tests.search.cli import FAKE_QUICK, run_cli

    out = run_cli(*FAKE_QUICK, "--export", "m", cwd=tmp_path)
    assert out.returncode == 2 and "--export DIR needs --budget" in out.stderr
    out = run_cli(*FAKE_QUICK, "--final-augment", "light", cwd=tmp_path)
    assert out.returncode == 2 and "--final-augment needs --budget" in out.stderr
    out = run_cli(*FAKE_QUICK, "--no-tta", cwd=tmp_path)
    assert out.returncode == 2 and "--no-tta needs --budget" in out.stderr
    out = run_cli(*FAKE_QUICK, "--budget", "5m", "--final-augment", "wild", cwd=tmp_path)
    assert out.returncode == 2 and "--final-augment 'wild' is not one of" in out.stderr
    bad = run_cli(*FAKE_QUICK, "--budget", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_gpu_space_gets_the_same_budget_planning_and_final_training(tmp_path) -> None:
    """efficientnet (a GPU space) through --budget: planned from its trials, trained for real."""
    import json

    from tests.search.cli import run_cli

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        "--study", "efficientnet", "--data", "demo", "--image-size", "32", "--weights", "none",
        "--trainer", "fake", "--folds", "2", "--epochs", "2", "--n-trials", "3",
        "--storage", url, "--budget", "90s", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "budget: the final model of trial" in out.stderr
    config = json.loads((tmp_path / "models" / "efficientnet" / "config.json").read_text())
    assert config["config"]["backbone"].startswith("EfficientNetV2")
    assert config["epochs"] >= 1
    # robust when the paired check ran and took it; the trial's own level when it did not, or
    # when 90 s left too little for it (CHECK_MAX_SHARE), as the log then says
    from tests.search.cli import load

    trial = load(url, "efficientnet").trials[config["trial"]]
    searched, check = trial.user_attrs["config"]["augment"], config["recipe"]["check"]
    if check is None:
        assert "no paired check" in out.stderr or searched == "robust"
        assert config["config"]["augment"] == searched
    else:
        assert config["config"]["augment"] == ("robust" if check["taken"] else searched)
    assert "chosen by --budget" in (tmp_path / "models" / "efficientnet" / "report.md").read_text()


def test_a_folder_read_twice_is_said_once(tmp_path, caplog) -> None:
    """A --budget run reads a folder for the search (resized to its size) and again for the final
    model (``_native``, at the images' own size); the user reads "read 8 images" once."""
    import logging

    from PIL import Image

    from search.data import load_dataset
    from search.engine.finish import _native

    root = tmp_path / "cells"
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40, 40), (60 * k, 10 * i, 90)).save(root / name / f"{i}.png")
    caplog.set_level(logging.INFO, logger="search.data")
    data = load_dataset(str(root), image_size=32)  # as search.engine.session reads it
    _, size = _native(str(root), data, None)
    reads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("read ")]
    assert size == 40
    assert reads == [f"read 8 images in 2 classes from {root}, resized to 32 px"]


def test_images_too_large_for_a_final_model_are_refused_before_the_search(tmp_path) -> None:
    """1,100 px images: the final model would train at their own size, above what a trial takes,
    so the run says so (and what to pass) before the first trial and writes nothing."""
    from tests.search.cli import run_cli

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 1100, 1100, 3), dtype=np.uint8)
    np.savez(tmp_path / "big.npz", images=images, labels=np.arange(8) % 2)
    out = run_cli(
        *("--study", "quick", "--trainer", "fake", "--data", str(tmp_path / "big.npz")),
        *("--folds", "2", "--budget", "5m", "--storage", f"sqlite:///{tmp_path / 's.db'}"),
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "at most 1024px" in out.stderr and "--image-size" in out.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "models").exists()
