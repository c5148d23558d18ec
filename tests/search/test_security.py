"""Security: explicit space files only, no pickle on user data, no password printed or stored."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import optuna
import pytest

from spaces.file import SpaceFileError, load_space_file
from tests.conftest import require
from tests.search.cli import FAKE_QUICK, ROOT, load, run_cli


def test_a_space_file_is_json_validated_and_used_only_when_named(tmp_path: Path) -> None:
    spec = {
        "name": "mine",
        "description": "two backbones",
        "backbones": ["small_cnn"],
        "image_size": 32,
        "folds": 2,
        "epochs": 2,
        "n_trials": 2,
        "weights": "none",
        "learning_rate": [1e-3, 3e-3],
        "class_weighting": [True],
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(spec))
    space = load_space_file(path)
    assert space.name == "mine" and space.backbones == ("small_cnn",)
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = run_cli(
        "--space-file",
        str(path),
        "--data",
        "demo",
        "--trainer",
        "fake",
        "--storage",
        url,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    trials = load(url, "mine").trials
    assert len(trials) == 2
    # A single-valued choice is fixed, not searched: every trial gets it.
    assert all(t.user_attrs["config"]["class_weighting"] is True for t in trials)
    # Not picked up by name alone: only the built-in table answers --study.
    assert run_cli("--study", "mine", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "x", "description": "", "backbones": ["ResNet"]}, "unknown backbones"),
        ({"name": "x", "description": "", "backbones": ["small_cnn"], "code": "1"}, "unknown keys"),
        ({"name": "x", "backbones": ["small_cnn"]}, "missing required key 'description'"),
        (
            {"name": "x", "description": "", "backbones": ["small_cnn"], "learning_rate": [1, "a"]},
            "learning_rate",
        ),
        (
            {"name": "x", "description": "", "backbones": ["small_cnn"], "class_weighting": []},
            "class_weighting must be a list of distinct true/false",
        ),
        (
            {"name": "x", "description": "", "backbones": ["small_cnn"], "class_weighting": [1]},
            "class_weighting must be a list of distinct true/false",
        ),
    ],
)
def test_bad_space_files_are_refused(tmp_path: Path, spec: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SpaceFileError, match=message):
        load_space_file(path)


def test_no_pickle_on_user_data() -> None:
    for path in [
        *ROOT.glob("search/**/*.py"),
        *ROOT.glob("trainer/**/*.py"),
        *ROOT.glob("spaces/**/*.py"),
        *ROOT.glob("storage/**/*.py"),
    ]:
        text = path.read_text()
        assert "allow_pickle=True" not in text, path
        assert not re.search(r"^\s*(import pickle|from pickle)", text, re.M), path
        assert "np.load(" not in text or "allow_pickle=False" in text, path


def test_password_is_never_printed_or_stored(tmp_path: Path) -> None:
    url = os.environ.get("SEARCH_TEST_POSTGRES_URL", "")
    require(bool(url), "SEARCH_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
    from sqlalchemy.engine import make_url

    secret = make_url(url).password
    require(bool(secret), "the test PostgreSQL URL has no password")
    name = f"secret-{os.getpid()}-{int(time.time())}"
    out = run_cli(
        *FAKE_QUICK,
        "--name",
        name,
        "--n-trials",
        "2",
        "--storage",
        url,
        "-v",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f":{secret}@" not in out.stdout + out.stderr
    assert "***" in out.stdout  # the dashboard command shows the URL, redacted
    study = load(url, name)
    stored = json.dumps([study.user_attrs] + [t.user_attrs for t in study.trials], default=str)
    assert secret not in stored
    optuna.delete_study(study_name=name, storage=url)
