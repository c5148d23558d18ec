"""The quick space's portfolio: queued first when a study is created, left out with
--no-portfolio, and the very configurations bench/portfolio.py chose on the recorded tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spaces import SPACES
from spaces.base import StudySettings
from storage.records import STARTING_POINT
from tests.search.cli import FAKE_QUICK, ROOT, load, run_cli

SETTINGS = StudySettings(epochs=4, weights="none", seed=0, image_size=32)


def _first_trials(tmp_path: Path, *extra: str, n: int = 5) -> list:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", str(n), "--pruner", "none", *extra,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return sorted(load(url, "quick").trials, key=lambda t: t.number)


def test_the_portfolio_is_queued_first_in_its_order(tmp_path: Path) -> None:
    portfolio = SPACES["quick"].starting_params(SETTINGS)
    assert len(portfolio) >= 2  # a portfolio, not one point
    trials = _first_trials(tmp_path)
    for trial, params in zip(trials, portfolio, strict=False):
        assert trial.params == params
        assert trial.user_attrs.get(STARTING_POINT) is True
    assert not any(STARTING_POINT in t.user_attrs for t in trials[len(portfolio) :])


def test_no_portfolio_leaves_the_start_to_the_sampler(tmp_path: Path) -> None:
    portfolio = SPACES["quick"].starting_params(SETTINGS)
    trials = _first_trials(tmp_path, "--no-portfolio")
    assert len(trials) == 5
    assert not any(STARTING_POINT in t.user_attrs for t in trials)
    assert trials[0].params not in portfolio


def test_no_portfolio_on_resume_says_it_is_ignored_and_nothing_waits(tmp_path: Path) -> None:
    portfolio = SPACES["quick"].starting_params(SETTINGS)
    first = _first_trials(tmp_path, n=1)  # at most --n-trials are queued: nothing left waiting
    assert [t.params for t in first] == portfolio[:1]
    url = f"sqlite:///{tmp_path / 'a.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "3", "--pruner", "none", "--no-portfolio",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--no-portfolio ignored" in out.stderr
    trials = sorted(load(url, "quick").trials, key=lambda t: t.number)
    assert len(trials) == 3 and trials[0].params == portfolio[0]
    assert not any(STARTING_POINT in t.user_attrs for t in trials[1:])


def test_the_shipped_portfolio_is_what_the_bench_chooses_on_the_tables() -> None:
    """The committed tables, re-chosen by bench/portfolio.py now, give spaces/quick.py's points
    (and docs/portfolio.json says the same)."""
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import portfolio as p; "
        "print(json.dumps([p.params_of(k) for k in p.select(3)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    chosen = json.loads(out.stdout.strip().splitlines()[-1])
    shipped = [dict(p) for p in SPACES["quick"].starting_points]
    assert shipped == chosen
    assert json.loads((ROOT / "docs" / "portfolio.json").read_text())["chosen"] == chosen


def test_a_portfolio_larger_than_n_trials_is_cut_and_the_log_says_so(tmp_path: Path) -> None:
    portfolio = SPACES["quick"].starting_params(SETTINGS)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    out = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "1", "--pruner", "none", cwd=tmp_path
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    said = f"--n-trials 1 holds 1 of the {len(portfolio)} starting configurations (0 from"
    assert said in out.stderr and f"then 1 of the portfolio's {len(portfolio)})" in out.stderr
    assert len(load(url, "quick").trials) == 1
