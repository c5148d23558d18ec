"""Fixtures the export tests share: one real tiny study per session (TensorFlow processes run
one at a time)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from spaces import SPACES
from tests.search.cli import run_cli
from tests.search.test_export_predict import SIZE, _write_npz


@pytest.fixture(scope="session")
def study(real_arrays, tmp_path_factory) -> dict:
    """Study data (300 images) and held-out data (100 others), plus a finished tiny study."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(7)
    order = rng.permutation(len(real_arrays["labels"]))
    train, held = np.sort(order[:300]), np.sort(order[300:400])
    assert not set(train) & set(held)
    names = [str(c) for c in real_arrays["class_names"]]
    images, labels = real_arrays["images"], real_arrays["labels"].astype(np.int64)
    data = _write_npz(root / "study.npz", images[train], labels[train], names)
    heldout = _write_npz(root / "held.npz", images[held], labels[held], names)
    url = f"sqlite:///{root / 'studies.db'}"
    # The quick space opening with its portfolio's configuration that flips and turns, so the
    # export has test-time views (the first configuration trains without augmentation).
    quick = SPACES["quick"]
    light = [dict(p) for p in quick.starting_points if p["augment"] != "none"][:1]
    space = root / "quick.json"
    space.write_text(json.dumps({**dataclasses.asdict(quick), "starting_points": light}))
    out = run_cli(
        *("--space-file", str(space), "--data", str(data), "--storage", url, "--n-trials", "1"),
        *("--epochs", "1", "--folds", "2", "--image-size", str(SIZE), "--pruner", "none"),
        cwd=root,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {
        "root": root,
        "url": url,
        "data": data,
        "held": heldout,
        "held_images": images[held],
        "held_labels": labels[held],
        "names": names,
    }
