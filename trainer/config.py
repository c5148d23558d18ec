"""What one trial is: plain, frozen records with no TensorFlow, so spaces can import them.

The backbone table lives here as plain data (block counts, default sizes); the Keras side of each
backbone (constructor, which layer belongs to which block) is in ``trainer/backbones.py``.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import InvalidConfig

AUGMENT_LEVELS: tuple[str, ...] = ("none", "light", "moderate", "heavy", "robust")
# Which changes of orientation keep an image's label (the data's, declared or measured):
# ``dihedral`` quarter turns and mirror, ``mirror`` left-right only, ``none`` neither.
SYMMETRIES: tuple[str, ...] = ("dihedral", "mirror", "none")
# Whether colour may be shifted (hue, saturation) without changing the label: ``shift`` it may,
# ``keep`` it carries the label (brightness and contrast still vary).
COLOURS: tuple[str, ...] = ("shift", "keep")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "lion", "ranger")
PRECISIONS: tuple[str, ...] = ("float32", "mixed_float16", "mixed_bfloat16")
MAX_IMAGE_SIZE = 1024  # the largest input a trial takes, in px
# Keras 3 backends a trial can run on (KERAS_BACKEND, chosen before Keras is imported).
BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")
# Objectives a trial can be scored and early-stopped on (all maximised).
MONITORS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "robust_accuracy",
)


class Decision(str, enum.Enum):
    """What the caller tells the trainer after each report."""

    CONTINUE = "continue"
    STOP = "stop"


@dataclass(frozen=True)
class BackboneInfo:
    """One backbone's facts: the Keras constructor, family, blocks, sizes, weights.

    ``blocks`` maps a layer name to the block it belongs to, for "unfreeze depth": each
    ``(regex, offset)`` is tried in turn, and the first that matches gives block = its first
    group (0 when the group did not take part) + offset; a layer no pattern matches belongs to no
    block (stem layers join the first block, the final convolution the last, in
    ``trainer.backbones``)."""

    name: str
    keras_name: str  # attribute of keras.applications ("" for the built-in small CNN)
    family: str  # mobilenet | efficientnet | convnext | cnn
    n_blocks: int  # units of "unfreeze depth": blocks or stages, top first
    blocks: tuple[tuple[str, int], ...]
    min_size: int = 32
    weights_file: str = ""  # the file Keras caches for include_top=False ImageNet weights

    @property
    def has_pretrained_weights(self) -> bool:
        return bool(self.weights_file)


# Per family: the layer-name patterns of its blocks (MobileNetV3 expanded-conv blocks,
# EfficientNetV2 stages numbered from 1, ConvNeXt stages and the downsampling before each).
_BLOCKS: dict[str, tuple[tuple[str, int], ...]] = {
    "mobilenet": ((r"^expanded_conv(?:_(\d+))?_", 0),),
    "efficientnet": ((r"^block(\d+)[a-z]_", -1),),
    "convnext": ((r"_stage_(\d+)_", 0), (r"_downsampling_block_(\d+)", 1)),
    "cnn": ((r"^cnn_block(\d+)_", 0),),
}


def _info(name: str, family: str, n_blocks: int, min_size: int, file: str) -> BackboneInfo:
    keras_name = name if family != "cnn" else ""
    return BackboneInfo(name, keras_name, family, n_blocks, _BLOCKS[family], min_size, file)


# One row per backbone. Block counts: MobileNetV3 expanded-conv blocks, EfficientNetV2 stages,
# ConvNeXt stages, small CNN conv blocks. Stem layers belong to the first block and the final
# convolution / norm to the last, so depth == n_blocks makes the whole backbone trainable.
BACKBONES: dict[str, BackboneInfo] = {
    b.name: b
    for b in (
        _info("small_cnn", "cnn", 4, 32, ""),
        _info(
            "MobileNetV3Small",
            "mobilenet",
            11,
            32,
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ),
        _info(
            "MobileNetV3Large",
            "mobilenet",
            15,
            32,
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        ),
        _info("EfficientNetV2B0", "efficientnet", 6, 32, "efficientnetv2-b0_notop.h5"),
        _info("EfficientNetV2B1", "efficientnet", 6, 32, "efficientnetv2-b1_notop.h5"),
        _info("EfficientNetV2B2", "efficientnet", 6, 32, "efficientnetv2-b2_notop.h5"),
        _info("EfficientNetV2B3", "efficientnet", 6, 32, "efficientnetv2-b3_notop.h5"),
        _info("ConvNeXtTiny", "convnext", 4, 32, "convnext_tiny_notop.h5"),
        _info("ConvNeXtSmall", "convnext", 4, 32, "convnext_small_notop.h5"),
        _info("ConvNeXtBase", "convnext", 4, 32, "convnext_base_notop.h5"),
        _info("ConvNeXtLarge", "convnext", 4, 32, "convnext_large_notop.h5"),
        _info("ConvNeXtXLarge", "convnext", 4, 32, "convnext_xlarge_notop.h5"),
    )
}


def backbone_info(name: str) -> BackboneInfo:
    try:
        return BACKBONES[name]
    except KeyError:
        raise InvalidConfig(
            f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}"
        ) from None


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded application weights (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def is_pretrained(weights: str) -> bool:
    """``none`` trains from scratch; ``imagenet`` or a file path start from pretrained weights."""
    return weights != "none"


def starts_pretrained(info: BackboneInfo, weights: str, start_backbone: str = "") -> bool:
    """Whether ``info`` starts from ``weights``: ``imagenet`` or a file for the backbones Keras
    ships ImageNet files for, and any file for ``start_backbone`` (the backbone of the export
    ``--weights DIR`` named, which the file was read out of)."""
    if not is_pretrained(weights):
        return False
    return info.has_pretrained_weights or info.name == start_backbone


@dataclass(frozen=True)
class TrialConfig:
    """Everything that decides how one trial trains. Frozen, JSON-able, validated on creation."""

    backbone: str = "small_cnn"
    image_size: int = 96
    weights: str = "none"  # "none" | "imagenet" | path to a weights file
    # With weights "imagenet": a folder holding Keras's weight files (--weights-dir), read
    # before the Keras cache and the download; "" for none.
    weights_dir: str = ""
    unfreeze_depth: int = 0  # top blocks trainable after warm-up when pretrained
    augment: str = "light"
    # What the augmentation, the robustness score and the test-time views may change (the
    # study's; a configuration stored before these fields existed trained as the defaults).
    symmetry: str = "dihedral"
    colour: str = "shift"
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    l2: float = 0.0  # L2 on the dense head
    dropout: float = 0.2
    head_width: int = 0  # 0: no hidden dense layer in the head
    batch_size: int = 32
    label_smoothing: float = 0.0
    class_weighting: bool = False
    epochs: int = 10
    # This and the four below were set before measuring, not tuned (docs/constants.md).
    patience: int = 3  # early stopping; 0 turns it off
    plateau_patience: int = 2  # ReduceLROnPlateau; 0 turns it off
    plateau_factor: float = 0.5
    warmup_epochs: int = 1  # head-only epochs before unfreezing (pretrained only)
    finetune_lr_scale: float = 0.1  # learning rate multiplier after unfreezing
    bn_momentum: float | None = None  # None: chosen from steps per epoch (see trainer/backbones.py)
    precision: str = "float32"
    jit_compile: bool = False
    # The Keras backend the trial must run on ("": whichever this process's Keras runs on);
    # search.run sets it, so every stored trial says which backend trained it.
    backend: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        info = backbone_info(self.backbone)
        problems: list[str] = []
        if not info.min_size <= self.image_size <= MAX_IMAGE_SIZE:
            problems.append(
                f"image_size={self.image_size} must be in [{info.min_size}, {MAX_IMAGE_SIZE}]"
            )
        if not 0 <= self.unfreeze_depth <= info.n_blocks:
            problems.append(
                f"unfreeze_depth={self.unfreeze_depth} is beyond {self.backbone}, which has "
                f"{info.n_blocks} blocks (valid: 0..{info.n_blocks})"
            )
        if self.augment not in AUGMENT_LEVELS:
            problems.append(f"augment={self.augment!r} is not one of {', '.join(AUGMENT_LEVELS)}")
        if self.symmetry not in SYMMETRIES:
            problems.append(f"symmetry={self.symmetry!r} is not one of {', '.join(SYMMETRIES)}")
        if self.colour not in COLOURS:
            problems.append(f"colour={self.colour!r} is not one of {', '.join(COLOURS)}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.backend not in ("", *BACKENDS):
            problems.append(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not 0 < self.learning_rate < 10:
            problems.append(f"learning_rate={self.learning_rate} must be in (0, 10)")
        if self.weight_decay < 0 or self.l2 < 0:
            problems.append("weight_decay and l2 must be >= 0")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout} must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.head_width < 0 or self.batch_size < 1 or self.epochs < 1:
            problems.append("head_width must be >= 0, batch_size and epochs >= 1")
        if self.patience < 0 or self.plateau_patience < 0 or self.warmup_epochs < 0:
            problems.append("patience, plateau_patience and warmup_epochs must be >= 0")
        if not 0 < self.plateau_factor < 1 or not 0 < self.finetune_lr_scale <= 1:
            problems.append("plateau_factor must be in (0, 1) and finetune_lr_scale in (0, 1]")
        if self.bn_momentum is not None and not 0 < self.bn_momentum < 1:
            problems.append(f"bn_momentum={self.bn_momentum} must be in (0, 1)")
        if problems:
            raise InvalidConfig("invalid trial config: " + "; ".join(problems))

    @property
    def info(self) -> BackboneInfo:
        return BACKBONES[self.backbone]

    @property
    def pretrained(self) -> bool:
        return is_pretrained(self.weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidConfig(f"unknown trial config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)
