"""quick: makes real progress on 2 CPU cores in about 10 minutes (small models at 64x64, 3 folds)."""

from __future__ import annotations

from spaces.base import Space

SPACE = Space(
    name="quick",
    description="small CNN and MobileNetV3Small at 64x64, 3 folds, 4 epochs: a CPU-sized search",
    backbones=("small_cnn", "MobileNetV3Small"),
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
        {
            "backbone": "small_cnn",
            "augment": "none",
            "optimizer": "adamw",
            "learning_rate": 2e-3,
            "weight_decay": 1e-4,
            "l2": 1e-6,
            "dropout": 0.2,
            "head_width": 0,
            "batch_size": 32,
            "label_smoothing": 0.0,
            "class_weighting": False,
        },
        {
            "backbone": "small_cnn",
            "augment": "none",
            "optimizer": "adamw",
            "learning_rate": 2e-3,
            "weight_decay": 1e-4,
            "l2": 1e-6,
            "dropout": 0.2,
            "head_width": 0,
            "batch_size": 64,
            "label_smoothing": 0.0,
            "class_weighting": False,
        },
        {
            "backbone": "small_cnn",
            "augment": "light",
            "optimizer": "adamw",
            "learning_rate": 2e-3,
            "weight_decay": 1e-4,
            "l2": 1e-6,
            "dropout": 0.2,
            "head_width": 0,
            "batch_size": 32,
            "label_smoothing": 0.0,
            "class_weighting": False,
        },
    ),
)
