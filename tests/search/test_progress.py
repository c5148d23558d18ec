from __future__ import annotations

import io
import logging

from search.engine.progress import Progress
from trainer import TrialConfig


def test_terminal_status_line_shows_trial_fold_epoch_and_best() -> None:
    out = io.StringIO()
    p = Progress(3, interactive=True, stream=out, done=1)
    p.trial_started(4, TrialConfig(), "CPU", "")
    p.epoch(4, 1, 2, 0.8123)
    assert "1/3 finished" in out.getvalue() and "#4 fold 1 epoch 2 0.812" in out.getvalue()
    p.trial_finished(4, "complete", 0.9, "")
    p.epoch(5, 0, 0, 0.5)
    last = out.getvalue().split("\r")[-1]
    assert "2/3 finished" in last and "best 0.9000 (#4)" in last
    p.close()
    assert out.getvalue().endswith("\n")


def test_plain_log_lines_when_not_a_terminal(caplog) -> None:
    out = io.StringIO()
    p = Progress(3, interactive=False, stream=out)
    with caplog.at_level(logging.INFO, logger="search.engine.progress"):
        p.trial_started(0, TrialConfig(), "GPU:0", "retry of trial 3, re-using its finished fold 0")
        p.trial_finished(0, "pruned", None, "after fold 1 (fold-level); fold scores 0.5000")
    assert out.getvalue() == ""  # no control characters in logs
    assert "; retry of trial 3, re-using its finished fold 0" in caplog.text
    assert "trial 0 pruned: after fold 1 (fold-level); fold scores 0.5000" in caplog.text


def test_a_resumed_run_shows_the_studys_best_on_its_terminal_line(tmp_path) -> None:
    """Under a real pseudo-terminal, the live line of a resumed study starts from its best."""
    import os
    import pty
    import subprocess
    import sys

    from tests.search.cli import FAKE_QUICK, cli_env, load, run_cli

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    first = run_cli(
        *FAKE_QUICK, "--storage", url, "--n-trials", "3", "--pruner", "none", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-2000:]
    best = load(url, "quick").best_trial
    leader, follower = pty.openpty()
    env = cli_env(FAKE_EPOCH_SECONDS="0.2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.run", *FAKE_QUICK, "--storage", url, "--n-trials", "4",
         "--pruner", "none"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    screen = b"".join(chunks).decode(errors="replace")
    live = [line for line in screen.split("\r") if "3/4 finished" in line]
    assert live, screen[-2000:]
    assert all(f"best {best.value:.4f} (#{best.number})" in line for line in live), live[:3]
