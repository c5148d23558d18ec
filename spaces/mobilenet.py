"""mobilenet: MobileNetV3 Small/Large fine-tuned at 96x96."""

from __future__ import annotations

from spaces.base import Space

SPACE = Space(
    name="mobilenet",
    description="MobileNetV3Small/Large at 96x96, 5 folds, 15 epochs",
    backbones=("MobileNetV3Small", "MobileNetV3Large"),
    # One hand-set starting point, set before measuring (docs/constants.md).
    starting_points=(
        {
            "backbone": "MobileNetV3Large",
            "unfreeze_MobileNetV3Large": 6,
            "augment": "light",
            "optimizer": "adamw",
            "learning_rate": 1e-3,
            "weight_decay": 1e-4,
            "l2": 1e-5,
            "dropout": 0.2,
            "head_width": 0,
            "batch_size": 32,
            "label_smoothing": 0.1,
            "class_weighting": True,
        },
    ),
)
