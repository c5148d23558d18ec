"""Which function trains a trial: ``keras`` (the real trainer), ``fake``, or ``module:function``.

``module:function`` names any importable callable with ``trainer.train_trial``'s signature (the
benchmarks replay recorded training through one, ``bench/replay.py``); the module must be
importable in the worker processes too (installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import importlib

from search.cli import UsageError
from trainer.records import TrainTrial

BUILT_IN = ("keras", "fake")


def parse_trainer(name: str) -> str:
    """argparse type for ``--trainer``: a built-in name or ``module:function``."""
    module, _, function = name.partition(":")
    if name in BUILT_IN or (
        module
        and function
        and all(p.isidentifier() for p in module.split("."))
        and function.isidentifier()
    ):
        return name
    raise argparse.ArgumentTypeError(
        f"{name!r} is not keras, fake or MODULE:FUNCTION (for example mypkg.train:train_trial)"
    )


def resolve_trainer(name: str) -> TrainTrial:
    """The training function behind a ``--trainer`` value; UsageError if it cannot be loaded."""
    if name == "fake":
        from search.testing.fake import fake_train_trial

        return fake_train_trial
    if name == "keras":
        from trainer.train import train_trial

        return train_trial
    module_name, _, function = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"--trainer {name}: cannot import module {module_name!r} ({exc}); install it or put "
            "its folder on PYTHONPATH"
        ) from None
    train = getattr(module, function, None)
    if not callable(train):
        raise UsageError(f"--trainer {name}: module {module_name!r} has no function {function!r}")
    return train
