"""A final model's epochs follow its own epoch times to end by a deadline (``trainer.final``)."""

from __future__ import annotations

import time

import numpy as np

from trainer.final import Deadline, cosine_schedule


def test_epochs_grow_early_to_fill_the_time_and_never_past_the_cap() -> None:
    now = [100.0]
    deadline = Deadline(at=400.0, max_epochs=40, clock=lambda: now[0])
    # 2 epochs done (the first traced: 25 s, then 10 s), 300 s left, 5 kept back: 2 + 29 fit
    assert deadline.total(2, 10, [25.0, 10.0]) == 31
    assert Deadline(at=400.0, max_epochs=20, clock=lambda: now[0]).total(2, 10, [25.0, 10.0]) == 20


def test_epochs_grow_whenever_time_is_left_and_shrink_whenever_it_is_short() -> None:
    now = [100.0]
    deadline = Deadline(at=400.0, max_epochs=100, clock=lambda: now[0])
    # 6 of 10 done at 10 s an epoch, 300 s left less 5 kept back: 29 more fit, past half or not.
    assert deadline.total(6, 10, [10.0] * 6) == 35
    now[0] = 370.0  # 30 s left at 10 s an epoch: 2 more, half an epoch kept for the refresh
    assert deadline.total(6, 10, [10.0] * 6) == 8
    now[0] = 401.0
    assert deadline.total(6, 10, [10.0] * 6) == 6  # out of time: stop now


def test_one_more_epoch_than_planned_is_not_worth_a_replan_unless_it_reaches_the_cap() -> None:
    now = [0.0]
    # 6 of 10 done at 10 s an epoch, 55 s left less 5 kept back: 5 more fit, one beyond the plan.
    assert Deadline(at=55.0, max_epochs=100, clock=lambda: now[0]).total(6, 10, [10.0] * 6) == 10
    assert Deadline(at=55.0, max_epochs=11, clock=lambda: now[0]).total(6, 10, [10.0] * 6) == 11
    # Two beyond it: the run grows.
    assert Deadline(at=65.0, max_epochs=100, clock=lambda: now[0]).total(6, 10, [10.0] * 6) == 12


def test_the_first_epochs_tracing_is_left_out_once_there_are_others() -> None:
    now = [0.0]
    deadline = Deadline(at=100.0, max_epochs=100, clock=lambda: now[0])
    assert deadline.total(2, 10, [60.0, 5.0]) == 2 + int((100 - 2.5) // 5)


def test_fit_all_with_a_deadline_trains_what_fits_on_a_cosine_decay(real_small) -> None:
    from trainer.config import TrialConfig
    from trainer.final import fit_all
    from trainer.records import Dataset

    data = Dataset(real_small.images[:64], real_small.labels[:64], real_small.class_names)
    config = TrialConfig(backbone="small_cnn", image_size=int(data.images.shape[1]), batch_size=32)
    seen: list[int] = []
    # A deadline already passed: one epoch (the minimum), whatever was planned.
    result = fit_all(
        config, data, 5, deadline=Deadline(at=time.monotonic(), max_epochs=5),
        progress=lambda name, epoch, total: seen.append(total),
    )  # fmt: skip
    assert len(result.epochs) == 1 and seen == [1]
    # A far deadline grows the planned 3 epochs to the cap of 4 after the first, re-drawing the
    # cosine decay over 4 (its first rate is the same for any length).
    far = fit_all(config, data, 3, deadline=Deadline(at=time.monotonic() + 3600, max_epochs=4))
    rates = [e.learning_rate for e in far.epochs]
    assert np.allclose(rates, cosine_schedule(config, 4), rtol=1e-5)


def test_epochs_of_unequal_cost_are_priced_by_their_size() -> None:
    """Progressive resizing: epochs at a quarter of the cost (first half of the run) are timed
    per unit of full-size cost; an epoch at full size costs four of theirs."""
    now = [0.0]
    deadline = Deadline(at=200.0, max_epochs=100, clock=lambda: now[0])
    quarter = 0.25

    def cost(epoch: int, total: int) -> float:
        return quarter if epoch < total // 2 else 1.0

    # 3 small epochs done (the first traced), 4 s each: 16 s a full-size epoch; 192 s left.
    total = deadline.total(3, 10, [30.0, 4.0, 4.0], [quarter] * 3, cost)
    expected = max(t for t in range(3, 101) if sum(cost(e, t) for e in range(3, t)) * 16 <= 200 - 8)
    assert total == expected == 20
    # Without the cost model the same times would count every future epoch as a small one.
    assert deadline.total(3, 10, [30.0, 4.0, 4.0]) > 40


def test_the_first_epoch_at_a_new_size_does_not_replan() -> None:
    now = [0.0]
    deadline = Deadline(at=50.0, max_epochs=100, clock=lambda: now[0])
    # Switched to full size: its first epoch traced (30 s); wait for a second before re-planning.
    assert deadline.total(6, 10, [9.0, 2.0, 2.0, 2.0, 2.0, 30.0], [0.25] * 5 + [1.0]) == 10
    # One more at full size: 8 s each, 14 s left less 4 kept back: one more epoch.
    now[0] = 36.0
    seconds, relative = [9.0, 2.0, 2.0, 2.0, 2.0, 30.0, 8.0], [0.25] * 5 + [1.0] * 2
    assert deadline.total(7, 10, seconds, relative) == 8
    # With time to spare, that first price lengthens the run although 7 of 10 are done.
    now[0] = 0.0
    assert deadline.total(7, 10, seconds, relative) == 7 + int((50 - 4) // 8)
