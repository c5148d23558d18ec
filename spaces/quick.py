"""quick: makes real progress on 2 CPU cores in about 10 minutes (small models at 64x64, 3 folds)."""

from __future__ import annotations

from spaces.base import Space

# What the portfolio's configurations share (the recorded tables' fixed knobs, L2 at its low end).
_SHARED = {
    "backbone": "small_cnn",
    "optimizer": "adamw",
    "learning_rate": 2e-3,
    "weight_decay": 1e-4,
    "l2": 1e-6,
    "dropout": 0.2,
    "head_width": 0,
    "label_smoothing": 0.0,
    "class_weighting": False,
}

SPACE = Space(
    name="quick",
    description="small CNN and MobileNetV3Small at 64x64, 3 folds, 4 epochs: a CPU-sized search",
    backbones=("small_cnn", "MobileNetV3Small"),
    # The fidelity (size, folds, epochs, trials, patience) was set before measuring; bench/fidelity.py
    # measures what it ranks (docs/constants.md).
    image_size=64,
    folds=3,
    epochs=4,
    n_trials=10,
    weights="none",
    augment_levels=("none", "light", "moderate"),
    optimizers=("adam", "adamw", "lion", "ranger"),
    learning_rate=(3e-4, 1e-2),
    head_widths=(0, 64),
    batch_sizes=(32, 64),
    label_smoothing=(0.0, 0.1),
    patience=2,
    # The portfolio bench/portfolio.py chose across datasets on recorded tables (issue 38).
    starting_points=(
        {**_SHARED, "augment": "none", "batch_size": 32},
        {**_SHARED, "augment": "none", "batch_size": 64},
        {**_SHARED, "augment": "light", "batch_size": 32},
    ),
)
