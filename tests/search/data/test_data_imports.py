"""Importing the data layer stays cheap: no TensorFlow, no Optuna."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_search_data_imports_neither_tensorflow_nor_optuna() -> None:
    code = (
        "import sys, search.data; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
