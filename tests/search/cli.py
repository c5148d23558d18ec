"""Helpers for driving the real command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[2]
# The quick space on demo data at 32 px with the instant fake trainer: tests of the coordinator.
QUICK_32 = ("--study", "quick", "--data", "demo", "--image-size", "32")
FAKE_QUICK = (*QUICK_32, "--trainer", "fake")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.run", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "search.run", *args],
        cwd=cwd,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def dashboard_get(app, path: str) -> tuple[str, bytes]:
    """GET ``path`` from an Optuna dashboard WSGI ``app``: the status line and the body."""
    import io
    from wsgiref.util import setup_testing_defaults

    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update({"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()})
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return status[0], body


def dashboard_note(url: str, name: str) -> str:
    """The study's note as the Optuna dashboard serves it."""
    import json

    from optuna_dashboard import wsgi

    status, body = dashboard_get(wsgi(url), f"/api/studies/{load(url, name)._study_id}")
    assert status.startswith("200"), body[:500]
    return json.loads(body)["note"]["body"]


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def by_state(study: optuna.Study) -> dict[TrialState, list]:
    out: dict[TrialState, list] = {s: [] for s in TrialState}
    for t in study.get_trials():
        out[t.state].append(t)
    return out


def snapshot(url: str, name: str) -> list[tuple]:
    """Everything a test needs to say 'the study is unchanged'."""
    study = load(url, name)
    return [(t.number, t.state, t.value, t.params, sorted(t.user_attrs)) for t in study.trials] + [
        tuple(sorted(study.user_attrs.items()))
    ]
