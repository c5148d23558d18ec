"""The Optuna dashboard reads a study written by search.run (fake trainer, real CLI)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

from optuna_dashboard import wsgi

from tests.search.cli import FAKE_QUICK, load, run_cli


def _get(app, path: str) -> tuple[str, bytes]:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update({"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()})
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return status[0], body


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
    status, body = _get(app, f"/api/studies/{study_id}")
    assert status.startswith("200"), body[:500]
    detail = json.loads(body)
    trials = detail["trials"]
    assert len(trials) == 3
    for trial in trials:
        steps = [v["step"] for v in trial["intermediate_values"]]
        assert steps == list(range(12))  # 3 folds x 4 epochs, one step scheme
        assert "## Trial" in trial["note"]["body"] and "| fold |" in trial["note"]["body"]
        assert trial["artifacts"] and trial["artifacts"][0]["mimetype"] == "image/png"
        # The artifact is named after its trial, without a temporary file's random suffix.
        assert trial["artifacts"][0]["filename"] == f"confusion_trial{trial['number']}.png"
    assert "## Leaderboard" in detail["note"]["body"]
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
