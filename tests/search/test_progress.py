from __future__ import annotations

import io
import logging

from search.progress import Progress
from trainer import TrialConfig


def test_terminal_status_line_shows_trial_fold_epoch_and_best() -> None:
    out = io.StringIO()
    p = Progress(3, interactive=True, stream=out, done=1)
    p.trial_started(4, TrialConfig(), "CPU", 0)
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
    with caplog.at_level(logging.INFO, logger="search.progress"):
        p.trial_started(0, TrialConfig(), "GPU:0", 2)
        p.trial_finished(0, "pruned", None, "after fold 1 (fold-level)")
    assert out.getvalue() == ""  # no control characters in logs
    assert "reusing 2 finished folds" in caplog.text and "pruned" in caplog.text
