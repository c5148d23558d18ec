"""Data for the search: load a ``--data`` spec, check it, fingerprint it, or make demo data.

Pure numpy + Pillow (no TensorFlow, no Optuna), so importing this package is cheap.
"""

from __future__ import annotations

from search.data.classes import BLOODMNIST_CLASSES
from search.data.demo import make_demo
from search.data.demo_orientation import make_demo_orientation
from search.data.errors import DataError
from search.data.fingerprint import fingerprint
from search.data.loaders import load_dataset
from search.data.validate import validate

__all__ = [
    "BLOODMNIST_CLASSES",
    "DataError",
    "fingerprint",
    "load_dataset",
    "make_demo",
    "make_demo_orientation",
    "validate",
]
