"""convnext: ConvNeXt Tiny/Small/Base fine-tuned at 96x96 (a GPU study)."""

from __future__ import annotations

from spaces.base import Space

SPACE = Space(
    name="convnext",
    description="ConvNeXtTiny/Small/Base at 96x96, 5 folds, 15 epochs (GPU)",
    backbones=("ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase"),
    learning_rate=(3e-5, 1e-3),
    weight_decay=(1e-5, 1e-1),
    batch_sizes=(32, 64),
    # One hand-set starting point, set before measuring (docs/constants.md).
    starting_points=(
        {
            "backbone": "ConvNeXtTiny",
            "unfreeze_ConvNeXtTiny": 2,
            "augment": "moderate",
            "optimizer": "adamw",
            "learning_rate": 2e-4,
            "weight_decay": 5e-2,
            "l2": 1e-6,
            "dropout": 0.2,
            "head_width": 0,
            "batch_size": 32,
            "label_smoothing": 0.1,
            "class_weighting": True,
        },
    ),
)
