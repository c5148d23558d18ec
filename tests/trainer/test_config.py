from __future__ import annotations

import pytest

from trainer import BACKBONES, InvalidConfig, TrialConfig
from trainer.metrics import class_weights


def test_unfreeze_depth_beyond_the_backbone_is_an_invalid_config() -> None:
    with pytest.raises(
        InvalidConfig, match=r"unfreeze_depth=12 is beyond MobileNetV3Small.*0\.\.11"
    ):
        TrialConfig(backbone="MobileNetV3Small", weights="imagenet", unfreeze_depth=12)


def test_unknown_backbone_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidConfig, match="valid backbones: small_cnn, MobileNetV3Small"):
        TrialConfig(backbone="ResNet50")


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidConfig) as info:
        TrialConfig(augment="wild", optimizer="sgd", dropout=1.5)
    message = str(info.value)
    assert "augment='wild'" in message and "optimizer='sgd'" in message and "dropout" in message


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys() -> None:
    cfg = TrialConfig(backbone="EfficientNetV2B0", learning_rate=3e-4, class_weighting=True)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InvalidConfig, match="unknown trial config keys"):
        TrialConfig.from_dict({**cfg.to_dict(), "momentum": 0.9})


def test_backbone_table_covers_the_families() -> None:
    families = {info.family for info in BACKBONES.values()}
    assert families == {"cnn", "mobilenet", "efficientnet", "convnext"}
    assert {"MobileNetV3Small", "EfficientNetV2B3", "ConvNeXtXLarge"} <= set(BACKBONES)


def test_class_weights_follow_the_formula() -> None:
    labels = [0] * 60 + [1] * 30 + [2] * 10
    w = class_weights(labels, 3)
    raw = [100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10)]
    mean = sum(raw) / 3
    assert w.tolist() == pytest.approx([r / mean for r in raw], rel=1e-6)
    assert w.mean() == pytest.approx(1.0)
    assert w[2] / w[0] == pytest.approx(6.0)  # inverse frequency
