"""A user-supplied trainer for tests of ``--trainer MODULE:FUNCTION``: the fake trainer, logged."""

from __future__ import annotations

import os

from search.testing.fake import fake_train_trial


def train_trial(config, data, folds, report, **kwargs):
    result = fake_train_trial(config, data, folds, report, **kwargs)
    with open(os.environ["CUSTOM_TRAINER_LOG"], "a") as f:
        f.write(f"{os.getpid()} {config.learning_rate!r}\n")
    result.timings["trial"] = 0.001
    return result


not_callable = 3


def no_large_weights(config, data, folds, report, **kwargs):
    """The fake trainer on a machine where MobileNetV3Large's ImageNet file cannot be had."""
    from trainer.errors import WeightsUnavailable

    if config.backbone == "MobileNetV3Large" and config.weights == "imagenet":
        raise WeightsUnavailable("could not load ImageNet weights for MobileNetV3Large (test)")
    return fake_train_trial(config, data, folds, report, **kwargs)


def no_weights_at_all(config, data, folds, report, **kwargs):
    """A machine where no ImageNet file can be loaded."""
    from trainer.errors import WeightsUnavailable

    raise WeightsUnavailable(f"could not load ImageNet weights for {config.backbone} (test)")


def no_cost(config, data, folds, report, hooks=None, **kwargs):
    """A trainer written before cost objectives: it never calls ``hooks.after_build``."""
    return fake_train_trial(config, data, folds, report, **kwargs)
