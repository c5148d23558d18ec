"""The Optuna dashboard reads a study written by search.run (fake trainer, real CLI), and the
study's note says what the user got: the final model, the objective, how to read the curves."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna_dashboard import wsgi

from search.reporting.dashboard import study_note
from storage.study import FINAL_RECIPE
from tests.search.cli import FAKE_QUICK, dashboard_get, load, run_cli

CURVES = "each fold restarts at epoch 0, so the curve steps back at every fold boundary"


def test_dashboard_shows_curves_and_notes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    out = run_cli(
        *FAKE_QUICK,
        "--storage",
        url,
        "--n-trials",
        "3",
        "--pruner",
        "none",
        "--metric",
        "macro_f1",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    study_id = load(url, "quick")._study_id
    app = wsgi(url, artifact_store=str(tmp_path / "artifacts"))
    status, body = dashboard_get(app, f"/api/studies/{study_id}")
    assert status.startswith("200"), body[:500]
    detail = json.loads(body)
    trials = detail["trials"]
    assert len(trials) == 3
    for trial in trials:
        steps = [v["step"] for v in trial["intermediate_values"]]
        assert steps == list(range(12))  # 3 folds x 4 epochs, one step scheme
        assert "## Trial" in trial["note"]["body"] and "| fold |" in trial["note"]["body"]
        assert f"{CURVES} (step = fold x 4 + epoch)" in trial["note"]["body"]
        assert trial["artifacts"] and trial["artifacts"][0]["mimetype"] == "image/png"
        # The artifact is named after its trial, without a temporary file's random suffix.
        assert trial["artifacts"][0]["filename"] == f"confusion_trial{trial['number']}.png"
    note = detail["note"]["body"]
    assert "## Leaderboard" in note and "## Final model" not in note  # no --budget run
    # The study list says only "Direction: MAXIMIZE": the note names the metric beside it.
    assert "**macro_f1 (maximize): the mean over folds of each fold's best epoch**" in note
    assert f"{CURVES} (step = fold x 4 + epoch)" in note
    assert "Parameter importances are not meaningful yet: 3 complete trials, fewer" in note
    # The objective is named after --metric, not "Objective 0".
    assert detail["objective_names"] == ["macro_f1"]
    study = load(url, "quick")
    for trial in study.trials:
        per_class = trial.user_attrs["per_class"]
        assert set(per_class) == set(study.user_attrs["class_names"])
        assert all(0 <= v["f1"] <= 1 for v in per_class.values())
    pngs = list((tmp_path / "artifacts").rglob("*"))
    assert len([p for p in pngs if p.is_file()]) == 3
    assert f"--artifact-dir {tmp_path / 'artifacts'}" in out.stdout


def test_the_study_note_leads_with_the_final_model() -> None:
    study = optuna.create_study(direction="maximize")
    for key, value in {
        "epochs": 5,
        "image_size": 64,
        "metric": "accuracy",
        "symmetry": "mirror",
        "symmetry_reason": "a quick classifier kept mirror 97% | quarter turn 20%",
        "colour": "shift",
        "colour_reason": "the images are grey: colour changes do nothing",
        FINAL_RECIPE: {
            "augment": "light",
            "augment_reason": "light, as the trial searched (no check was run)",
            "tail": None,
            "progressive": [64, 0.5],
            "views": "mirror",
            "planned_epochs": 12,
            "check": None,
            "epochs": 12,
            "folder": "/work/models/quick",
            "trial": 0,
            "backbone": "MobileNetV3Small",
            "cv_score": 0.9,
            "cv_folds": 1,
            "image_size": 96,
            "symmetry": "mirror",
            "colour": "shift",
        },
    }.items():
        study.set_user_attr(key, value)
    note = study_note(study, "accuracy")
    lines = note.splitlines()
    assert lines[:4] == ["## Final model", "", "| | |", "|---|---|"]
    assert lines[4:13] == [
        "| folder | /work/models/quick |",
        "| trial | 0 (cross-validated accuracy 0.9000, the mean over the 1 finished fold of each "
        "fold's best epoch) |",
        "| backbone | MobileNetV3Small |",
        "| input size | 96 px (the search trained and scored its trials at 64 px) |",
        "| augmentation | light, as the trial searched (no check was run); the first 50% of the "
        "epochs at 64 px |",
        "| test-time views | mirror: the softmax averaged over the image and its left-right "
        "mirror (2x cost) |",
        "| symmetry | mirror (a quick classifier kept mirror 97% \\| quarter turn 20%) |",
        "| colour | shift (the images are grey: colour changes do nothing) |",
        "| epochs | 12 trained |",
    ]
    order = [note.index(s) for s in ("## Final model", "## Objective", "## Leaderboard")]
    assert order == sorted(order)
    assert f"{CURVES} (step = fold x 5 + epoch)" in note
    assert "Parameter importances are not meaningful yet: 0 complete trials" in note
