"""The dependency direction, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(out.split())


def test_trainer_never_imports_optuna() -> None:
    modules = _modules_after("import trainer, trainer.train, trainer.backbones, trainer.augment")
    assert "keras" in modules  # the import really loaded the training code
    assert "optuna" not in modules


def test_the_training_code_imports_tensorflow_only_on_tensorflow() -> None:
    import keras

    modules = _modules_after("import trainer.train, trainer.final, trainer.augment, trainer.steps")
    assert ("tensorflow" in modules) == (keras.backend.backend() == "tensorflow")


def test_spaces_import_no_tensorflow_and_no_optuna() -> None:
    modules = _modules_after("import spaces")
    assert "tensorflow" not in modules and "optuna" not in modules
