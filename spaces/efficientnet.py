"""efficientnet: EfficientNetV2 B0..B3 fine-tuned at 96x96."""

from __future__ import annotations

from spaces.base import Space

SPACE = Space(
    name="efficientnet",
    description="EfficientNetV2B0..B3 at 96x96, 5 folds, 15 epochs",
    backbones=("EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3"),
    # One hand-set starting point, set before measuring (docs/constants.md).
    starting_points=(
        {
            "backbone": "EfficientNetV2B0",
            "unfreeze_EfficientNetV2B0": 3,
            "augment": "moderate",
            "optimizer": "adamw",
            "learning_rate": 1e-3,
            "weight_decay": 1e-4,
            "l2": 1e-5,
            "dropout": 0.3,
            "head_width": 0,
            "batch_size": 32,
            "label_smoothing": 0.1,
            "class_weighting": True,
        },
    ),
)
