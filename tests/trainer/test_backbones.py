from __future__ import annotations

import re
from pathlib import Path

import keras
import pytest

from trainer import TrialConfig, WeightsUnavailable
from trainer.backbones import auto_bn_momentum, build_model, set_trainable
from trainer.config import BACKBONES


def _trainable_names(built) -> set[str]:
    return {layer.name for layer in built.backbone.layers if layer.trainable and layer.weights}


def _weighted(built) -> list[str]:
    return [layer.name for layer in built.backbone.layers if layer.weights]


def test_mobilenet_unfreeze_depth_makes_exactly_the_top_blocks_trainable() -> None:
    built = build_model(
        TrialConfig(backbone="MobileNetV3Small", image_size=64), 8, steps_per_epoch=10
    )
    names = _weighted(built)
    for depth in (0, 1, 3, 11):
        set_trainable(built, depth, pretrained=True)
        top = {f"expanded_conv_{i}_" for i in range(11 - depth, 11) if i > 0}
        expected = {
            n
            for n in names
            if not n.endswith("_bn")
            and (
                any(n.startswith(p) for p in top)
                or (depth >= 1 and n == "conv_1")  # the final 1x1 conv joins the last block
                or (depth == 11 and (n == "conv" or re.match(r"expanded_conv_(?!\d)", n)))
            )
        }
        assert _trainable_names(built) == expected, depth
    head = {v.path for layer in built.head_layers for v in layer.trainable_weights}
    model_trainable = {v.path for v in built.model.trainable_variables}
    assert head <= model_trainable


def test_efficientnet_unfreeze_depth_counts_stages_and_keeps_batchnorm_frozen() -> None:
    built = build_model(
        TrialConfig(backbone="EfficientNetV2B0", image_size=64), 8, steps_per_epoch=10
    )
    names = _weighted(built)
    set_trainable(built, 2, pretrained=True)  # stages 5 and 6 plus the top conv
    expected = {
        n
        for n in names
        if (n.startswith(("block5", "block6")) or n.startswith("top_"))
        and not isinstance(built.backbone.get_layer(n), keras.layers.BatchNormalization)
    }
    assert _trainable_names(built) == expected
    assert not any(n.startswith(("block4", "stem")) for n in _trainable_names(built))
    set_trainable(built, 6, pretrained=False)  # from scratch: everything, BatchNorm too
    assert _trainable_names(built) == set(names)


def test_from_scratch_batchnorm_momentum_follows_steps_per_epoch() -> None:
    built = build_model(TrialConfig(backbone="small_cnn", image_size=32), 8, steps_per_epoch=50)
    momenta = {
        layer.momentum
        for layer in built.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {auto_bn_momentum(50)} == {0.9}  # not Keras' 0.99
    assert auto_bn_momentum(500) == pytest.approx(0.98) and auto_bn_momentum(5000) == 0.99


def test_offline_imagenet_weights_give_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    cfg = TrialConfig(
        backbone="MobileNetV3Small", weights="imagenet", unfreeze_depth=1, image_size=64
    )
    with pytest.raises(WeightsUnavailable) as info:
        build_model(cfg, 8, steps_per_epoch=10)
    message = str(info.value)
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message
    assert str(tmp_path / "models") in message
    assert "--weights-dir" in message and "--weights none" in message


def test_weights_file_and_weights_dir_are_loaded(tmp_path: Path, monkeypatch) -> None:
    source = build_model(
        TrialConfig(backbone="MobileNetV3Small", image_size=64), 8, steps_per_epoch=10
    ).backbone
    path = tmp_path / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    source.save_weights(tmp_path / "mnv3.weights.h5")
    (tmp_path / "mnv3.weights.h5").rename(path.with_suffix(".weights.h5"))
    cfg = TrialConfig(
        backbone="MobileNetV3Small",
        weights=str(path.with_suffix(".weights.h5")),
        unfreeze_depth=2,
        image_size=64,
    )
    built = build_model(cfg, 8, steps_per_epoch=10)
    a = source.get_layer("conv").get_weights()[0]
    b = built.backbone.get_layer("conv").get_weights()[0]
    assert (a == b).all()
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build_model(cfg.replace(weights=str(tmp_path / "missing.h5")), 8, steps_per_epoch=10)


def test_weights_dir_supplies_the_imagenet_file_without_a_download(
    tmp_path: Path, monkeypatch
) -> None:
    """--weights-dir (the configuration's weights_dir): a folder holding Keras's own file name,
    here a small no-top file saved in Keras's legacy .h5 layout, is loaded for weights='imagenet'
    with no cache and no network."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = build_model(
        TrialConfig(backbone="MobileNetV3Small", image_size=64), 8, steps_per_epoch=10
    ).backbone
    folder = tmp_path / "weights"
    folder.mkdir()
    with h5py.File(folder / BACKBONES["MobileNetV3Small"].weights_file, "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, source)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_cache"))

    def offline(*args, **kwargs):
        raise AssertionError("the weights were fetched, not read from the weights folder")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    cfg = TrialConfig(
        backbone="MobileNetV3Small",
        weights="imagenet",
        weights_dir=str(folder),
        unfreeze_depth=2,
        image_size=64,
    )
    built = build_model(cfg, 8, steps_per_epoch=10)
    loaded = built.backbone.get_weights()
    expected = source.get_weights()
    assert len(loaded) == len(expected) > 100
    assert all((a == b).all() for a, b in zip(loaded, expected, strict=True))
    # Without the folder the same config goes for the download (and fails offline).
    with pytest.raises(WeightsUnavailable, match="could not load ImageNet weights"):
        build_model(cfg.replace(weights_dir=""), 8, steps_per_epoch=10)


def test_a_corrupt_file_in_the_weights_dir_fails_the_trial_as_weights_unavailable(
    tmp_path: Path, monkeypatch
) -> None:
    """So the coordinator leaves the backbone out of sampling instead of failing on."""
    (tmp_path / BACKBONES["MobileNetV3Small"].weights_file).write_bytes(b"truncated")
    cfg = TrialConfig(
        backbone="MobileNetV3Small",
        weights="imagenet",
        weights_dir=str(tmp_path),
        unfreeze_depth=1,
        image_size=64,
    )
    with pytest.raises(WeightsUnavailable, match="from --weights-dir"):
        build_model(cfg, 8, steps_per_epoch=10)
