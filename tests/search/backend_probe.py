"""A ``--trainer`` plug-in for the backend tests: the real ``train_trial``, and a line per trial
saying which backend the worker's Keras ran on and whether TensorFlow was ever imported there."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def train_trial(config: Any, data: Any, folds: Any, report: Any, **kwargs: Any) -> Any:
    import keras

    from trainer.train import train_trial as real

    result = real(config, data, folds, report, **kwargs)
    with open(os.environ["BACKEND_PROBE"], "a") as fh:  # one short line: an atomic append
        seen = {
            "keras": keras.backend.backend(),
            "config": config.backend,
            "tensorflow_imported": "tensorflow" in sys.modules,
        }
        fh.write(json.dumps(seen) + "\n")
    return result
