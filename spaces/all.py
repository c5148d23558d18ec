"""all: every family in one study, from the small CNN baseline to ConvNeXtTiny."""

from __future__ import annotations

from spaces import convnext, efficientnet, mobilenet
from spaces.base import Space

SPACE = Space(
    name="all",
    description="small CNN, MobileNetV3, EfficientNetV2B0-B3 and ConvNeXtTiny at 96x96",
    backbones=(
        "small_cnn",
        "MobileNetV3Small",
        "MobileNetV3Large",
        "EfficientNetV2B0",
        "EfficientNetV2B1",
        "EfficientNetV2B2",
        "EfficientNetV2B3",
        "ConvNeXtTiny",
    ),
    learning_rate=(3e-5, 3e-3),
    weight_decay=(1e-6, 1e-1),
    starting_points=(
        mobilenet.SPACE.starting_points
        + efficientnet.SPACE.starting_points
        + convnext.SPACE.starting_points
    ),
)
