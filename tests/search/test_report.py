"""``python -m search.report``: a real study made through the CLI (fake trainer, one OOM drill),
reported, its PNGs checked with Pillow and the HTML rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from PIL import Image

from search.report import main
from search.reporting.summary import study_facts
from search.reporting.view import StudyView, state_label
from storage.study import FINAL_RECIPE
from tests.conftest import require
from tests.search.cli import FAKE_QUICK, ROOT, by_state, cli_env, load, run_cli

PLOTS = (
    "history",
    "importances",
    "parallel",
    "by_backbone",
    "by_augment",
    "pruning",
    "curves",
    "top_trials",
)
ROW_HEAD = ("state", "trials", "fold-epochs trained", "re-used", "continued", "saved")
# The 8-trial study completes fewer than MIN_IMPORTANCE_TRIALS: every figure but the importances.
DRAWN = len(PLOTS) - 1
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
    "--enable-logging=stderr",
    "--v=0",
    "--dump-dom",
)


def run_report(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.report", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """8 finished trials of the quick space, some pruned, plus trial 2 failed by an OOM drill."""
    tmp = tmp_path_factory.mktemp("report_study")
    url = f"sqlite:///{tmp / 'studies.db'}"
    out = run_cli(
        *FAKE_QUICK,
        "--n-trials", "8", "--storage", url, cwd=tmp, SEARCH_FAULTS="oom@2", SEARCH_FAULTS_ARMED="1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    states = by_state(load(url, "quick"))
    assert len(states[TrialState.COMPLETE]) >= 2 and states[TrialState.PRUNED]
    assert [t.user_attrs["failure_kind"] for t in states[TrialState.FAIL]] == ["out_of_memory"]
    return url


@pytest.fixture(scope="module")
def report_dir(study_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import hashlib

    database = Path(study_url.removeprefix("sqlite:///"))
    before = hashlib.sha256(database.read_bytes()).hexdigest(), database.stat().st_mtime_ns
    out_dir = tmp_path_factory.mktemp("report_out") / "report"
    out = run_report("--study", "quick", "--storage", study_url, "--out", str(out_dir), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    # search.report only reads: the study's database is byte for byte what it was.
    assert (
        hashlib.sha256(database.read_bytes()).hexdigest(),
        database.stat().st_mtime_ns,
    ) == before
    return out_dir


def test_report_writes_html_and_every_plot_as_png(report_dir: Path) -> None:
    for name in PLOTS:
        with Image.open(report_dir / "plots" / f"{name}.png") as im:
            assert im.width > 100 and im.height > 100, name
            grey = im.convert("L")
            lo, hi = grey.getextrema()
            assert hi - lo > 50, f"{name}.png is (nearly) one colour"
            assert len(grey.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20, name
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert page.count("src='data:image/png;base64,") == DRAWN
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "external resource in report"
    assert "OOM when allocating (drill)" in page and "out_of_memory" in page
    assert "<h2>Leaderboard</h2>" in page and "small_cnn" in page
    assert "fold-epochs trained" in page
    assert not list(report_dir.rglob("*.tmp")), "temporary files left behind"


def _render(html: Path, profile: Path) -> tuple[dict[str, str], list[str]]:
    out = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    body = re.search(r"<body([^>]*)>", out.stdout)
    assert body, out.stdout[:2000]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    errors = [
        line
        for line in out.stderr.splitlines()
        if "CONSOLE" in line and re.search(r"Uncaught|Error|Refused|Failed", line)
    ]
    return attrs, errors


def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    require(
        shutil.which("chromium") is not None, "chromium is not installed (apt-get install chromium)"
    )
    attrs, errors = _render(report_dir / "report.html", tmp_path / "profile")
    assert int(attrs["images"]) == DRAWN > 5, attrs
    assert attrs["rendered"] == attrs["images"], attrs
    assert not errors, errors
    # The check can fail: a copy with one image corrupted renders one image fewer.
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"base64,[^']{40}", "base64,AAAA", page, count=1), encoding="utf-8")
    attrs, _ = _render(broken, tmp_path / "profile")
    assert int(attrs["rendered"]) == DRAWN - 1, attrs


def test_unknown_study_is_exit_2_and_lists_the_studies(study_url: str, tmp_path: Path) -> None:
    out = run_report(
        "--study", "nope", "--storage", study_url, "--out", str(tmp_path / "r"), cwd=ROOT
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "'nope'" in out.stderr and "quick" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bad_storage_and_unwritable_out_are_exit_2(
    study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    assert main(["--study", "quick", "--storage", f"sqlite:///{missing}", "--out", "r"]) == 2
    assert "no SQLite database" in capsys.readouterr().err and not missing.exists()
    empty = tmp_path / "empty.db"  # a file without Optuna's tables: read, never given a schema
    empty.touch()
    assert main(["--study", "quick", "--storage", f"sqlite:///{empty}", "--out", "r"]) == 2
    assert "study tables" in capsys.readouterr().err and empty.stat().st_size == 0
    assert main(["--study", "quick", "--storage", "not a url", "--out", str(tmp_path)]) == 2
    assert "not a usable SQLAlchemy URL" in capsys.readouterr().err
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["--study", "quick", "--storage", study_url, "--out", str(blocker / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and len(err.strip().splitlines()) == 1


def _edge_study(url: str, name: str, complete: int) -> None:
    """A study as search.run makes it, with ``complete`` scored trials and one failed one."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for key, value in {"folds": 2, "epochs": 3, "metric": "accuracy", "space": "quick"}.items():
        study.set_user_attr(key, value)
    space = {
        "backbone": CategoricalDistribution(["small_cnn", "MobileNetV3Small"]),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    }
    for i in range(complete):
        trial = study.ask(space)
        for step in range(6):
            trial.report(0.3 + 0.05 * step + 0.01 * i, step)
        trial.set_user_attr("fold_scores", [0.5, 0.55])
        study.tell(trial, 0.525)
    trial = study.ask(space)
    trial.set_user_attr("failure_kind", "invalid_config")
    trial.set_user_attr("failure_reason", "<b>width</b> must be positive")
    study.tell(trial, state=TrialState.FAIL)


@pytest.mark.parametrize("complete", [0, 1])
def test_edge_cases_still_give_a_full_report(
    complete: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    _edge_study(url, "edge", complete)
    optuna.create_study(study_name="empty", storage=url)
    for name in ("edge", "empty"):
        assert main(["--study", name, "--storage", url, "--out", str(tmp_path / name)]) == 0
        assert {p.stem for p in (tmp_path / name / "plots").glob("*.png")} == set(PLOTS)
    page = (tmp_path / "edge" / "report.html").read_text(encoding="utf-8")
    assert "Parameter importances are not meaningful yet" in page
    assert "&lt;b&gt;width&lt;/b&gt; must be positive" in page  # escaped, not markup
    if complete == 0:
        assert "No complete or pruned trials yet." in page
        assert (
            '<p class="lead">1 trial, and it failed. Failures by kind: invalid_config in 1 ' in page
        )
        assert (
            "Pruning statistics: No fold-epoch trained yet (1 finished or failed trial).</li>"
            in page
        )
    empty = (tmp_path / "empty" / "report.html").read_text(encoding="utf-8")
    assert "No trial failed." in empty and "No complete or pruned trials yet." in empty


def test_facts_never_show_a_password(study_url: str) -> None:
    study = load(study_url, "quick")
    view = StudyView(tuple(study.trials), folds=3, epochs=4, metric="accuracy")
    facts = dict(study_facts(study, "postgresql://search:s3cret@db/studies", view))
    assert "s3cret" not in str(facts) and facts["storage"].startswith("postgresql://search:")


def _page_and_view(url: str, name: str, out_dir: Path) -> tuple[str, optuna.Study]:
    assert main(["--study", name, "--storage", url, "--out", str(out_dir)]) == 0
    return (out_dir / "report.html").read_text(encoding="utf-8"), load(url, name)


def _facts(page: str) -> dict[str, str]:
    return dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", page))


@pytest.fixture(scope="module")
def all_failed_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Five small_cnn trials (the space's --weights default is imagenet), each failed by a NaN
    drill, then the study stopped by --max-failures 5."""
    tmp = tmp_path_factory.mktemp("all_failed")
    space = tmp / "cnn.json"
    space.write_text(
        '{"name": "cnn", "description": "small_cnn only", "backbones": ["small_cnn"], '
        '"image_size": 32, "folds": 2, "epochs": 2, "n_trials": 5}'
    )
    url = f"sqlite:///{tmp / 'studies.db'}"
    out = run_cli(
        "--space-file", str(space), "--data", "demo", "--trainer", "fake",
        "--max-failures", "5", "--storage", url, cwd=tmp,
        SEARCH_FAULTS="nan@0,nan@1,nan@2,nan@3,nan@4", SEARCH_FAULTS_ARMED="1",
    )  # fmt: skip
    study = load(url, "cnn")
    assert study.user_attrs["weights"] == "imagenet", out.stderr[-3000:]
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5, out.stderr[-3000:]
    return url


def test_an_all_failed_study_leads_with_what_happened(all_failed_url: str, tmp_path: Path) -> None:
    page, study = _page_and_view(all_failed_url, "cnn", tmp_path / "r")
    body = page.split("<body>", 1)[1]
    lead = re.search(r"<p class=\"lead\">(.*?)</p>", body, re.S)
    assert lead, "no lead paragraph"
    assert lead.group(1) == (
        "5 trials, all failed. Failures by kind: non_finite_loss in 5 trials (training loss "
        "became nan in fold 0, epoch 0 (drill))."
    )
    # What happened comes first: the lead, then the failed-trials table, before facts.
    order = [body.index(s) for s in ('class="lead"', "<h2>Failed trials</h2>", "<td>storage</td>")]
    assert order == sorted(order), order
    # No figure has anything to draw: none is on the page; the note says why and where.
    assert "data:image/png" not in page, "empty placeholder figures on the page"
    left_out = page.split("Left out, nothing to draw yet", 1)[1].split("</ul>", 1)[0]
    items = re.findall(r"<li>([^<]*)</li>", left_out)
    assert len(items) == len(PLOTS), items
    assert items[1] == (
        "Parameter importances are not meaningful yet: 0 complete trials, fewer than the 10 that "
        "fANOVA needs to tell an effect from noise."
    )
    assert "<li>Optimisation history: No trial has a score yet (5 failed).</li>" in left_out
    assert {p.stem for p in (tmp_path / "r" / "plots").glob("*.png")} == set(PLOTS)
    facts = _facts(page)
    assert facts["trials"] == "5 failed"
    # Every trial ran small_cnn from scratch, whatever the space's default said.
    assert {t.user_attrs["weights"] for t in study.trials} == {"none"}
    assert facts["weights"] == "none (all 5 trials: small_cnn); study --weights imagenet"


def test_weights_fact_says_when_trials_differ(tmp_path: Path) -> None:
    """As search.run records them: small_cnn trials run weights none under --weights imagenet."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    study = optuna.create_study(study_name="mixed", storage=url, direction="maximize")
    for key, value in {
        "folds": 2,
        "epochs": 3,
        "metric": "accuracy",
        "weights": "imagenet",
    }.items():
        study.set_user_attr(key, value)
    space = {"backbone": CategoricalDistribution(["small_cnn", "MobileNetV3Small"])}
    for i, backbone in enumerate(["small_cnn", "MobileNetV3Small", "small_cnn", "small_cnn"]):
        weights = "none" if backbone == "small_cnn" else "imagenet"
        # The first only in its stored config, as older studies have it.
        attrs = {"config": {"weights": weights}} if i == 0 else {"weights": weights}
        study.add_trial(
            optuna.trial.create_trial(
                params={"backbone": backbone},
                distributions=space,
                value=0.5 + 0.1 * i,
                user_attrs=attrs,
            )
        )
    page, _ = _page_and_view(url, "mixed", tmp_path / "r")
    assert _facts(page)["weights"] == (
        "none (3 trials: small_cnn), imagenet (1 trial: MobileNetV3Small); study --weights imagenet"
    )
    assert '<p class="lead">4 trials: 4 complete; best trial 3, accuracy 0.8000.</p>' in page


@pytest.fixture(scope="module")
def screened_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """12 trials of the quick space: the first 4 screened, trial 4 promoted re-using fold 0."""
    tmp = tmp_path_factory.mktemp("screened")
    url = f"sqlite:///{tmp / 'studies.db'}"
    # the sampler's own trials, screened (the portfolio's are not)
    out = run_cli(*FAKE_QUICK, "--storage", url, "--n-trials", "12", "--no-portfolio", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [t.user_attrs.get("reused_folds") for t in load(url, "quick").trials][4] == [0]
    return url


def _expected_pruning_rows(study: optuna.Study) -> dict[str, dict[str, int]]:
    """The pruning table as the trials' records give it: per state, fold-epochs trained (less
    re-used folds), re-used, continued (a screened trial's folds its promoted trial trained,
    beyond those it re-used) and saved (the rest of the budget)."""
    folds, epochs = study.user_attrs["folds"], study.user_attrs["epochs"]
    heirs = {
        t.user_attrs["promoted_from"]: t for t in study.trials if "promoted_from" in t.user_attrs
    }
    expect: dict[str, dict[str, int]] = {}
    for t in study.trials:
        reused = set(t.user_attrs.get("reused_folds", ()))
        steps = set(t.intermediate_values)
        again = sum(step // epochs in reused for step in steps)
        heir = heirs.get(t.number)
        continued = 0
        if heir is not None:
            heir_reused = set(heir.user_attrs["reused_folds"])
            continued = sum(s // epochs not in heir_reused for s in heir.intermediate_values)
        row = expect.setdefault(state_label(t.state), dict.fromkeys(ROW_HEAD[1:], 0))
        row["trials"] += 1
        row["fold-epochs trained"] += len(steps) - again
        row["re-used"] += again
        row["continued"] += continued
        row["saved"] += folds * epochs - len(steps) - continued
    return expect


def _pruning_table(page: str) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The pruning table's head and its rows by state, each cell by its column's name."""
    table = page.split("<h2>Pruning statistics</h2>", 1)[1].split("</table>", 1)[0]
    head = re.findall(r"<th>([^<]*)</th>", table)
    cells = [re.findall(r"<td>([^<]*)</td>", r) for r in re.findall(r"<tr>(<td>.*?)</tr>", table)]
    return head, {r[0]: {h: int(v) for h, v in zip(head[1:], r[1:], strict=True)} for r in cells}


def test_reused_folds_are_neither_trained_nor_saved(screened_url: str, tmp_path: Path) -> None:
    page, study = _page_and_view(screened_url, "quick", tmp_path / "r")
    folds, epochs = study.user_attrs["folds"], study.user_attrs["epochs"]
    expect = _expected_pruning_rows(study)
    assert expect["complete"]["re-used"] > 0, "no re-used fold-epochs in this study"
    head, rows = _pruning_table(page)
    assert head == list(ROW_HEAD), head
    assert rows == {k: expect[k] for k in ("complete", "pruned")}, rows
    finished = [expect[k] for k in ("complete", "pruned")]
    saved = sum(r["saved"] for r in finished)
    budget = sum(r["trials"] for r in finished) * folds * epochs
    again = sum(r["re-used"] for r in finished)
    assert f"Finished trials left {saved} of {budget} fold-epochs untrained" in page
    assert f"and re-used {again} (folds trained by the trial they continue" in page


def test_the_pruning_figure_draws_reused_folds_in_their_own_colour(
    screened_url: str, tmp_path: Path
) -> None:
    from search.reporting.canvas import REUSED

    rgb = tuple(int(REUSED[i : i + 2], 16) for i in (1, 3, 5))

    def colours(url: str, name: str) -> set[tuple[int, ...]]:
        assert main(["--study", name, "--storage", url, "--out", str(tmp_path / name)]) == 0
        with Image.open(tmp_path / name / "plots" / "pruning.png") as im:
            return {c for _, c in im.convert("RGB").getcolors(1 << 20) or []}

    assert rgb in colours(screened_url, "quick")
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    _edge_study(url, "edge", 2)  # nothing re-used: the colour is not drawn by chance
    assert rgb not in colours(url, "edge")


def _lead(page: str) -> str:
    found = re.search(r"<p class=\"lead\">(.*?)</p>", page, re.S)
    assert found, "no lead paragraph"
    return found.group(1)


def test_lead_and_facts_count_states_in_one_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'states.db'}"
    _edge_study(url, "edge", 1)  # trial 0 complete, trial 1 failed
    load(url, "edge").ask()  # trial 2 running (asked, never told)
    page, _ = _page_and_view(url, "edge", tmp_path / "r")
    counts = "1 complete, 1 failed, 1 running"
    assert _facts(page)["trials"] == counts
    assert _lead(page).startswith(f"3 trials: {counts}; best trial 0"), _lead(page)


def test_training_time_counts_only_the_trials_that_recorded_it(
    study_url: str, report_dir: Path, all_failed_url: str, tmp_path: Path
) -> None:
    trials = load(study_url, "quick").trials
    timed = [float(t.user_attrs["seconds"]) for t in trials if "seconds" in t.user_attrs]
    assert 0 < len(timed) < len(trials), "the study should mix timed and failed trials"
    facts = _facts((report_dir / "report.html").read_text(encoding="utf-8"))
    assert facts["training time"] == (
        f"{sum(timed):.1f} s over {len(timed)} of {len(trials)} trials (not recorded by 1 failed)"
    )
    page, _ = _page_and_view(all_failed_url, "cnn", tmp_path / "r")
    assert _facts(page)["training time"] == "not recorded (5 failed)"


def test_a_promoted_trial_continues_its_screened_trial_nothing_saved_twice(
    screened_url: str, tmp_path: Path
) -> None:
    """Trial 4 is promoted from screened trial 0 and trains its folds 1 and 2: for trial 0 those
    fold-epochs are "continued", not "saved", and every finished trial still adds up to its
    full budget."""
    page, study = _page_and_view(screened_url, "quick", tmp_path / "r")
    budget = study.user_attrs["folds"] * study.user_attrs["epochs"]
    heirs = [t.user_attrs["promoted_from"] for t in study.trials if "promoted_from" in t.user_attrs]
    assert heirs and all(study.trials[n].user_attrs["screened"] for n in heirs), heirs
    expect = _expected_pruning_rows(study)
    assert expect["pruned"]["continued"] > 0, "no continued fold-epochs in this study"
    head, rows = _pruning_table(page)
    assert rows["pruned"]["saved"] == expect["pruned"]["saved"], rows
    assert head == list(ROW_HEAD), head
    assert rows == expect, rows
    for row in rows.values():  # every finished trial's budget, each fold-epoch counted once
        assert sum(v for k, v in row.items() if k != "trials") == row["trials"] * budget, row
    caption = page.split("<h2>Pruning statistics</h2>", 1)[1].split("</figcaption>", 1)[0]
    for word in ("trained", "re-used", "continued", "saved"):
        assert word in caption, word
    assert f"{expect['pruned']['continued']} more were continued (a screened" in caption


def _scored_study(url: str, name: str, complete: int) -> optuna.Study:
    """``complete`` complete trials whose value follows the learning rate (plus a little noise),
    with the study attributes search.run writes: 2 folds x 3 epochs of accuracy at 64 px."""
    import numpy as np

    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    attrs = {"folds": 2, "epochs": 3, "metric": "accuracy", "space": "quick", "image_size": 64}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    space = {
        "backbone": CategoricalDistribution(["small_cnn", "MobileNetV3Small"]),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    }
    rng = np.random.default_rng(0)
    for i in range(complete):
        exponent = float(rng.uniform(-4, -2))
        study.add_trial(
            optuna.trial.create_trial(
                params={
                    "backbone": space["backbone"].choices[i % 2],
                    "learning_rate": 10**exponent,
                },
                distributions=space,
                value=0.5 + 0.1 * (exponent + 4) + float(rng.normal(0, 0.01)),
            )
        )
    return study


@pytest.mark.parametrize("complete, drawn", [(9, False), (10, True)])
def test_importances_are_left_out_below_ten_complete_trials(
    complete: int, drawn: bool, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'scored.db'}"
    _scored_study(url, "scored", complete)
    page, _ = _page_and_view(url, "scored", tmp_path / "r")
    assert ("<h2>Parameter importances</h2>" in page) == drawn
    if not drawn:
        assert (
            "<li>Parameter importances are not meaningful yet: 9 complete trials, fewer than the "
            "10 that fANOVA needs to tell an effect from noise.</li>" in page
        )


def test_the_curves_say_why_they_step_back_at_each_fold(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    caption = page.split("<h2>Learning curves</h2>", 1)[1].split("</figcaption>", 1)[0]
    assert (
        "each fold restarts at epoch 0, so the curve steps back at every fold boundary "
        "(step = fold x 4 + epoch)" in caption
    )
    # No --budget run: no final model section, and the facts say so.
    assert "<h2>Final model</h2>" not in page
    assert _facts(page)["model input size"].startswith("no final model recorded")


RECORDED_FINAL = {  # as search.engine.finish records it at the end of a --budget run
    "augment": "robust",
    "augment_reason": "robust (paired check on 200 held-back images: taken)",
    "tail": ["light", 1 / 6],
    "progressive": None,
    "views": "dihedral",
    "planned_epochs": 20,
    "check": None,
    "epochs": 22,
    "folder": "/work/models/budget",
    "trial": 2,
    "backbone": "small_cnn",
    "cv_score": 0.97561,
    "cv_folds": 3,
    "image_size": 32,
    "symmetry": "dihedral",
    "colour": "keep",
}


TRUST = {
    "calibration_images": 120,
    "temperature": 1.42,
    "accuracy": 0.95,
    "ece_before": 0.061,
    "ece_after": 0.018,
    "reliability": {
        "bins": 15,
        "counts": [0] * 13 + [20, 100],
        "confidence": [None] * 13 + [0.9, 0.99],
        "accuracy": [None] * 13 + [0.85, 0.97],
    },
    "sets": [{"coverage": 0.95, "mean_set_size": 1.31, "set_coverage": 0.958}],
    "abstention": [{"coverage": 1.0, "images": 120, "accuracy": 0.95}],
    "domain": {
        "threshold": 2.5,
        "retain_goal": 0.95,
        "confidence": 0.9,
        "retained": 0.975,
        "detector": "the detector",
        "flagged_shifted": {"stain": 1.0, "noise": 1.0},
    },
}


def test_the_page_shows_the_final_models_calibration_and_in_domain_flag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trust.db'}"
    study = _scored_study(url, "trust", 3)
    study.set_user_attr(FINAL_RECIPE, {**RECORDED_FINAL, "trust": TRUST})
    page, _ = _page_and_view(url, "trust", tmp_path / "r")
    section = page.split("<h2>Trust: calibration, prediction sets, in-domain flag</h2>", 1)[1]
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", section))
    assert "ECE 0.061 before, 0.018 after" in rows["calibration"]
    assert "95%: 1.31 classes on average, 95.8% covered" in rows["prediction sets"]
    assert (
        "above 2.500 is flagged" in rows["in-domain flag"]
        and "97.5% of the slice" in rows["in-domain flag"]
    )
    assert "stain 100%" in rows["flagged when shifted"]
    assert "alt='reliability diagram' src='data:image/png;base64," in section
    # A final model recorded before calibration existed says what it lacks.
    study.set_user_attr(FINAL_RECIPE, RECORDED_FINAL)
    page, _ = _page_and_view(url, "trust", tmp_path / "r2")
    assert "exported before they existed" in page and "reliability diagram" not in page


def test_the_page_leads_with_the_final_model_and_names_both_sizes(tmp_path: Path) -> None:
    import html

    url = f"sqlite:///{tmp_path / 'budget.db'}"
    study = _scored_study(url, "budget", 3)
    study.set_user_attr("symmetry", "dihedral")
    study.set_user_attr("symmetry_reason", "declared with --symmetry")
    study.set_user_attr("colour", "keep")
    study.set_user_attr("colour_reason", "colour carries the label")
    study.set_user_attr(FINAL_RECIPE, RECORDED_FINAL)
    page, _ = _page_and_view(url, "budget", tmp_path / "r")
    body = page.split("<body>", 1)[1]
    order = [body.index(s) for s in ("<h2>Final model</h2>", 'class="lead"', "<td>storage</td>")]
    assert order == sorted(order), order
    section = body.split("<h2>Final model</h2>", 1)[1].split("</table>", 1)[0]
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", section))
    assert rows == {
        k: html.escape(v)
        for k, v in {
            "folder": "/work/models/budget",
            "trial": "2 (cross-validated accuracy 0.9756, the mean over the 3 finished folds of "
            "each fold's best epoch)",
            "backbone": "small_cnn",
            "input size": "32 px (the search trained and scored its trials at 64 px)",
            "augmentation": "robust (paired check on 200 held-back images: taken); the last 17% "
            "of the epochs light",
            "test-time views": "dihedral: the softmax averaged over 8 views: quarter turns, plain "
            "and mirrored (8x cost)",
            "symmetry": "dihedral (declared with --symmetry)",
            "colour": "keep (colour carries the label)",
            "epochs": "22 trained (planned 20; re-planned from its own epoch times)",
        }.items()
    }
    facts = _facts(body.split('<p class="lead">', 1)[1])
    assert facts["search image size"] == "64 px (every trial trained at it)"
    assert facts["model input size"] == "32 px (the exported final model&#x27;s)"
    assert "image size" not in facts
    assert facts["objective"] == html.escape(
        "accuracy (maximize): the mean over folds of each fold's best epoch"
    )
