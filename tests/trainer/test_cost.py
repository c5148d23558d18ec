"""A trial's cost objective is measured on its built model before the first epoch
(``TrainHooks.after_build``) and kept with the model for later trials of the architecture."""

from __future__ import annotations

import pytest

from trainer import loop
from trainer.config import Decision, TrialConfig
from trainer.errors import InvalidConfig
from trainer.folds import make_folds
from trainer.hooks import TrainHooks
from trainer.train import train_trial

BASE = dict(backbone="small_cnn", image_size=32, epochs=1, patience=0, plateau_patience=0, seed=3)


@pytest.fixture(autouse=True)
def _fresh():
    loop.forget_models()
    yield
    loop.forget_models()


def _trial(cfg: TrialConfig, data, folds, measured: list) -> list[str]:
    events: list[str] = []

    def report(*_: object) -> Decision:
        events.append("epoch")
        return Decision.CONTINUE

    def after_build(measure) -> None:
        events.append("cost")
        measured.append((measure("params"), measure("latency")))
        with pytest.raises(InvalidConfig, match="latency, params"):
            measure("flops")

    train_trial(cfg, data, folds, report, hooks=TrainHooks(after_build=[after_build]))
    return events


def test_cost_is_measured_on_the_built_model_before_training_and_kept(real_small) -> None:
    folds = make_folds(real_small.labels, 3, seed=0)[:1]
    measured: list[tuple[float, float]] = []
    events = _trial(TrialConfig(**BASE, head_width=0), real_small, folds, measured)
    assert events[0] == "cost" and events.count("cost") == 1 and "epoch" in events
    kept = next(iter(loop._KEPT.values()))
    params, latency = measured[0]
    assert params == kept.built.model.count_params() > 0
    assert latency > 0
    # Another trial of the same architecture reads the kept figure; a wider head is a new
    # architecture with more parameters.
    _trial(TrialConfig(**BASE, head_width=0, learning_rate=3e-4), real_small, folds, measured)
    assert measured[1] == measured[0]
    _trial(TrialConfig(**BASE, head_width=128), real_small, folds, measured)
    assert measured[2][0] > params
