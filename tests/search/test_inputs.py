"""read_inputs (prediction input) on real blood-cell images: what it logs about resizing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data.inputs import read_inputs


def test_one_resized_image_is_counted_in_the_singular(
    real_arrays: dict[str, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [str(c) for c in real_arrays["class_names"]]
    path = tmp_path / "cell.png"
    Image.fromarray(real_arrays["images"][0]).save(path)  # 96 x 96
    with caplog.at_level(logging.WARNING, logger="search.data.inputs"):
        inputs = read_inputs([str(path)], names, 32)
    assert inputs.images.shape == (1, 32, 32, 3) and inputs.resized == 1
    assert "resized 1 image (1 at 96x96) to the model's 32x32" in caplog.text
    Image.fromarray(real_arrays["images"][1]).save(tmp_path / "other.png")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="search.data.inputs"):
        read_inputs([str(path), str(tmp_path / "other.png")], names, 32)
    assert "resized 2 images (2 at 96x96)" in caplog.text
