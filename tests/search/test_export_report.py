"""What an export's ``report.md`` and ``config.json`` state about the trial's cross-validation:
one number, computed from the fold rows the report shows (no training, no Keras)."""

from __future__ import annotations

import statistics

import pytest

from search.engine.model_folder import ExportPlan, _config_json, _report
from trainer.records import EpochMetrics, FoldResult


def _fold(k: int, scores: list[float], *, stopped: bool = False) -> FoldResult:
    epochs = tuple(
        EpochMetrics(e, a, a, a, a, a, 1 - a, 1 - a, 1e-3, 1.0, robust_accuracy=a - 0.1)
        for e, a in enumerate(scores)
    )
    best = max(range(len(scores)), key=scores.__getitem__)
    return FoldResult(k, epochs, best, stopped, False, float(len(scores)), 1.0)


def _plan(folds: list[FoldResult], value: float, metric: str = "accuracy") -> ExportPlan:
    return ExportPlan(
        study="quick",
        storage="sqlite:///studies.db",
        trial=3,
        value=value,
        params={},
        config={"symmetry": "dihedral", "colour": "shift"},
        attrs={"metric": metric, "class_names": ["a", "b"]},
        spec="demo",
        fingerprint="0" * 64,
        folds=folds,
        ensemble=False,
        epochs=[4],
        schedules=[[1e-3] * 4],
        image_size=32,
        views="none",
    )


@pytest.mark.parametrize("metric", ["accuracy", "robust_accuracy"])
def test_the_headline_is_the_mean_of_the_finished_rows_and_stopped_folds_are_marked(
    metric: str,
) -> None:
    """A pruned trial's stored value is the last score it reported (fold 2, epoch 1: 0.41), not
    a cross-validated score: the report states the mean of the finished folds' rows instead."""
    folds = [_fold(0, [0.90, 0.98]), _fold(1, [0.97, 0.95]), _fold(2, [0.30, 0.41], stopped=True)]
    plan = _plan(folds, value=0.41, metric=metric)
    mean = statistics.mean(f.score(metric) for f in folds[:2])
    cfg = _config_json(plan, n_images=100)
    report = _report(plan, cfg, [], 1.0)
    assert (
        f"- cross-validated {metric}: **{mean:.4f}**, the mean over the 2 finished folds of each "
        "fold's best epoch (the table below)" in report
    )
    assert f"mean over the 2 finished folds {mean:.4f}, sd" in report
    section = report.split("## Cross-validation", 1)[1].split("\n\n")[1]
    table = section.splitlines()[2:]  # below the head and the rule
    assert [r.split("|")[1].strip() for r in table] == ["0", "1", "2 (stopped, not in the mean)"]
    assert [float(r.split("|")[3]) for r in table] == pytest.approx(
        [round(f.score(metric), 4) for f in folds]
    )
    assert cfg["value"] == pytest.approx(mean)
    assert cfg["fold_scores"] == pytest.approx([f.score(metric) for f in folds[:2]])
    assert f"{0.41:.4f}**" not in report
