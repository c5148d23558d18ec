"""Clean an image data set: duplicates, near duplicates, outliers and likely mislabels.

``clean(ds, CleanOptions(...)) -> CleanResult`` is pure (numpy, scipy, Pillow, scikit-learn;
no TensorFlow, no I/O). ``python -m search.clean`` wraps it with files and a report;
``search.cleaning.report`` writes that report; ``search.cleaning.dirt`` injects known dirt for
tests and the benchmark.
"""

from __future__ import annotations

from search.cleaning.core import clean
from search.cleaning.records import (
    REASON_TEXT,
    REASONS,
    CleanOptions,
    CleanResult,
    MislabelFlag,
    Removal,
)

__all__ = [
    "REASONS",
    "REASON_TEXT",
    "CleanOptions",
    "CleanResult",
    "MislabelFlag",
    "Removal",
    "clean",
]
