from __future__ import annotations

import warnings

import optuna
import pytest

from spaces import SPACES, FakeSuggester, StudySettings
from trainer import BACKBONES, TrialConfig

PRETRAINED = StudySettings(epochs=3, weights="imagenet", seed=7, image_size=96)
SCRATCH = StudySettings(epochs=3, weights="none", seed=7, image_size=64)


def test_the_five_spaces_exist() -> None:
    assert set(SPACES) == {"quick", "mobilenet", "efficientnet", "convnext", "all"}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_backbone_samples_a_valid_config(name: str) -> None:
    space = SPACES[name]
    for backbone in space.backbones:
        fake = FakeSuggester({"backbone": backbone})
        cfg = space.sample(fake, PRETRAINED)
        assert isinstance(cfg, TrialConfig) and cfg.backbone == backbone
        assert cfg.epochs == 3 and cfg.seed == 7 and cfg.image_size == 96
        for param in (
            "augment",
            "optimizer",
            "learning_rate",
            "weight_decay",
            "dropout",
            "l2",
            "head_width",
            "batch_size",
            "label_smoothing",
            "class_weighting",
        ):
            assert param in fake.asked, param
        info = BACKBONES[backbone]
        if info.family == "cnn":
            assert cfg.weights == "none" and f"unfreeze_{backbone}" not in fake.asked
        else:
            # unfreeze depth is conditional: its range is the chosen backbone's block count
            assert fake.asked[f"unfreeze_{backbone}"] == (0, info.n_blocks)
            assert cfg.weights == "imagenet"


def test_from_scratch_trains_everything_and_asks_no_depth() -> None:
    fake = FakeSuggester({"backbone": "MobileNetV3Small"})
    cfg = SPACES["quick"].sample(fake, SCRATCH)
    assert cfg.unfreeze_depth == BACKBONES["MobileNetV3Small"].n_blocks
    assert not any(k.startswith("unfreeze_") for k in fake.asked)


def test_depth_beyond_the_blocks_is_not_sampled() -> None:
    with pytest.raises(ValueError, match=r"not in \[0, 11\]"):
        SPACES["mobilenet"].sample(
            FakeSuggester({"backbone": "MobileNetV3Small", "unfreeze_MobileNetV3Small": 12}),
            PRETRAINED,
        )


@pytest.mark.parametrize("name", sorted(SPACES))
def test_starting_points_are_complete_configs(name: str) -> None:
    space = SPACES[name]
    for settings in (PRETRAINED, SCRATCH):
        points = space.starting_params(settings)
        assert points, name
        for params in points:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a value outside its range warns: fail on it
                cfg = space.sample(optuna.trial.FixedTrial(params), settings)
            assert cfg.backbone == params["backbone"]


def test_spaces_sample_inside_a_real_study() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    backbones = set()
    for _ in range(20):
        trial = study.ask()
        cfg = SPACES["all"].sample(trial, PRETRAINED)
        backbones.add(cfg.backbone)
        study.tell(trial, 0.5)
    assert len(backbones) >= 4


def test_the_weights_folder_travels_in_each_pretrained_trials_configuration() -> None:
    import dataclasses

    settings = dataclasses.replace(PRETRAINED, weights_dir="/models/keras")
    space = SPACES["all"]
    mobile = space.sample(FakeSuggester({"backbone": "MobileNetV3Small"}), settings)
    scratch = space.sample(FakeSuggester({"backbone": "small_cnn"}), settings)
    assert mobile.weights == "imagenet" and mobile.weights_dir == "/models/keras"
    assert scratch.weights == "none" and scratch.weights_dir == ""
    assert TrialConfig.from_dict(mobile.to_dict()) == mobile


def test_a_weights_file_starts_only_the_backbones_it_can_fit() -> None:
    """A file fits the backbones Keras ships ImageNet files for (small_cnn trains from scratch);
    a file read out of an export (--weights DIR) also fits that export's backbone."""
    space = SPACES["quick"]
    file = StudySettings(epochs=3, weights="w.weights.h5", seed=7, image_size=64)
    small = space.sample(FakeSuggester({"backbone": "small_cnn"}), file)
    assert small.weights == "none"
    mobile = space.sample(FakeSuggester({"backbone": "MobileNetV3Small"}), file)
    assert mobile.weights == "w.weights.h5"
    started = StudySettings(
        epochs=3, weights="w.weights.h5", seed=7, image_size=64, start_backbone="small_cnn"
    )
    fake = FakeSuggester({"backbone": "small_cnn"})
    adapted = space.sample(fake, started)
    assert adapted.weights == "w.weights.h5" and adapted.pretrained
    assert fake.asked["unfreeze_small_cnn"] == (0, BACKBONES["small_cnn"].n_blocks)
