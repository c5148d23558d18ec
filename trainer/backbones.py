"""The Keras side of the backbone table: constructors, block boundaries and BatchNorm policy.

``trainer.config.BACKBONES`` holds each backbone's facts, its block patterns included; here they
become layers: "unfreeze depth N" means the top N blocks become trainable, with their BatchNorm
layers kept frozen (and the backbone run in inference mode) when fine-tuning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from trainer.config import BackboneInfo, TrialConfig, keras_cache_dir
from trainer.errors import WeightsUnavailable


def block_of(info: BackboneInfo, layer_name: str) -> int | None:
    """The block of ``layer_name`` by the backbone's own patterns; None outside every block."""
    for regex, offset in info.blocks:
        match = re.search(regex, layer_name)
        if match is not None:
            return int(match.group(1) or 0) + offset
    return None


def auto_bn_momentum(steps_per_epoch: int) -> float:
    """BatchNorm momentum whose averaging window is about a tenth of an epoch.

    Keras' default 0.99 (0.999 in MobileNetV3) averages over 100-1,000 steps: with 50 steps per
    epoch the moving statistics still describe the random initial network when validation runs,
    so a model that fits its training batches predicts one class in inference mode. A window of
    steps/10, clipped to momentum 0.9..0.99, tracks the weights as they move (set before
    measuring, not swept: docs/constants.md).
    """
    window_fraction = 10.0 / max(1, steps_per_epoch)
    return float(1.0 - min(0.1, max(0.01, window_fraction)))


def _small_cnn(size: int) -> keras.Model:
    """Plain conv-BN-ReLU baseline for from-scratch runs: 4 blocks, 16..128 filters.

    About 44M multiply-adds per 64x64 image, cheaper than MobileNetV3Small, so it is the
    CPU-friendly from-scratch baseline.
    """
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1.0 / 255.0, name="cnn_rescale")(inputs)
    for block, filters in enumerate((16, 32, 64, 128)):
        for i in range(1 if block == 0 else 2):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"cnn_block{block}_conv{i}"
            )(x)
            x = keras.layers.BatchNormalization(name=f"cnn_block{block}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"cnn_block{block}_relu{i}")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"cnn_block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="cnn_gap")(x)
    return keras.Model(inputs, x, name="small_cnn")


def _construct(info: BackboneInfo, cfg: TrialConfig) -> keras.Model:
    size = cfg.image_size
    if info.family == "cnn":
        if cfg.weights == "imagenet":
            raise WeightsUnavailable(
                "small_cnn has no ImageNet weights; use weights 'none' or a small_cnn weights "
                "file for it, or pick a keras.applications backbone"
            )
        return _load_file(_small_cnn(size), cfg, info)
    ctor = getattr(keras.applications, info.keras_name)
    kwargs: dict[str, object] = {
        "include_top": False,
        "input_shape": (size, size, 3),
        "pooling": "avg",
    }
    if cfg.weights == "imagenet":
        cached = keras_cache_dir() / info.weights_file
        local = cfg.weights_dir
        if local and (Path(local) / info.weights_file).is_file():
            path = Path(local) / info.weights_file
            model = ctor(weights=None, **kwargs)
            try:
                model.load_weights(str(path))
            except Exception as exc:  # a truncated or foreign file: fail this trial, typed
                raise WeightsUnavailable(
                    f"could not load {path} (from --weights-dir) into {info.name}: {exc}; "
                    f"replace it with Keras' {info.weights_file}, or use --weights none"
                ) from exc
            return model
        try:
            return ctor(weights="imagenet", **kwargs)
        except Exception as exc:  # download or load failure: one clear error
            raise WeightsUnavailable(
                f"could not load ImageNet weights for {info.name}: {exc}. "
                f"Keras looks for {cached}; if this machine is offline, download "
                f"{info.weights_file} elsewhere and put it there (or point --weights-dir at a "
                "folder holding it), pass --weights PATH to a weights file, or use --weights none"
            ) from exc
    return _load_file(ctor(weights=None, **kwargs), cfg, info)


def _load_file(model: keras.Model, cfg: TrialConfig, info: BackboneInfo) -> keras.Model:
    """``model`` with the weights file ``cfg.weights`` loaded (as it is with weights none)."""
    if cfg.weights != "none":
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(
                f"weights file {path} does not exist; pass the path of a {info.name} "
                f"no-top weights file (e.g. {info.weights_file}), 'imagenet' or 'none'"
            )
        try:
            model.load_weights(str(path))
        except Exception as exc:
            raise WeightsUnavailable(
                f"weights file {path} does not fit {info.name} without its top: {exc}"
            ) from exc
    return model


@dataclass
class BuiltModel:
    """The trial's model and the pieces the training loop needs to address."""

    model: keras.Model
    backbone: keras.Model
    head_layers: list[keras.layers.Layer]
    block_of_layer: dict[str, int]  # backbone layer name -> block index (0 = bottom)
    n_blocks: int


def layer_blocks(backbone: keras.Model, info: BackboneInfo) -> dict[str, int]:
    """Map every weighted backbone layer to a block; stem joins block 0, the top the last one."""
    blocks: dict[str, int] = {}
    seen_block = False
    for layer in backbone.layers:
        if not layer.weights:
            continue
        block = block_of(info, layer.name)
        if block is None:
            block = info.n_blocks - 1 if seen_block else 0
        else:
            seen_block = True
        blocks[layer.name] = min(max(block, 0), info.n_blocks - 1)
    return blocks


def set_trainable(built: BuiltModel, depth: int, *, pretrained: bool) -> None:
    """Make the head and the top ``depth`` blocks trainable; BatchNorm stays frozen if pretrained.

    From scratch (``pretrained=False``) everything trains, BatchNorm included.
    """
    first = built.n_blocks - depth
    built.backbone.trainable = True
    for layer in built.backbone.layers:
        if not layer.weights:
            continue
        if not pretrained:
            layer.trainable = True
            continue
        in_top = built.block_of_layer.get(layer.name, -1) >= first and depth > 0
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = bool(in_top and not is_bn)
    for layer in built.head_layers:
        layer.trainable = True


def bn_momentum(cfg: TrialConfig, steps_per_epoch: int) -> float:
    """The backbone's BatchNorm momentum from scratch: the configuration's, else automatic."""
    return cfg.bn_momentum if cfg.bn_momentum is not None else auto_bn_momentum(steps_per_epoch)


class RateDropout(keras.layers.Layer):
    """Inverted dropout whose rate is a variable, so one traced training step serves any rate
    (a kept model's later trials; ``keras.layers.Dropout`` bakes its rate into the graph)."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape: Any) -> None:
        self.rate = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.first_rate),
            trainable=False,
            dtype="float32",
            name="rate",
        )

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        keep = keras.ops.cast(1.0 - self.rate, inputs.dtype)
        draw = keras.random.uniform(keras.ops.shape(inputs), seed=self.seed_generator)
        return keras.ops.where(keras.ops.cast(draw, inputs.dtype) < keep, inputs / keep, 0.0)


def build_model(
    cfg: TrialConfig, n_classes: int, *, steps_per_epoch: int, knobs: bool = False
) -> BuiltModel:
    """Backbone + pooled head (dropout, optional hidden layer with L2, float32 softmax).

    ``knobs``: the head's dropout is a ``RateDropout`` and its L2 is left to the training step
    (``trainer.steps.Knobs``), so a kept model's step is traced once for any dropout and L2."""
    info = cfg.info
    backbone = _construct(info, cfg)
    if not cfg.pretrained:
        momentum = bn_momentum(cfg, steps_per_epoch)
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = momentum
    regularizer = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 and not knobs else None
    dropout = RateDropout if knobs else keras.layers.Dropout
    head: list[keras.layers.Layer] = [dropout(cfg.dropout, name="head_dropout")]
    if cfg.head_width > 0:
        head += [
            keras.layers.Dense(
                cfg.head_width, activation="relu", kernel_regularizer=regularizer, name="head_dense"
            ),
            dropout(cfg.dropout, name="head_dropout2"),
        ]
    head.append(
        keras.layers.Dense(
            n_classes,
            activation="softmax",
            kernel_regularizer=regularizer,
            dtype="float32",
            name="head_softmax",
        )
    )
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    # Pretrained backbones always run in inference mode so their BatchNorm statistics stay put.
    x = backbone(inputs, training=False) if cfg.pretrained else backbone(inputs)
    for layer in head:
        x = layer(x)
    model = keras.Model(inputs, x, name=f"{info.name}_classifier")
    built = BuiltModel(model, backbone, head, layer_blocks(backbone, info), info.n_blocks)
    set_trainable(
        built,
        info.n_blocks if not cfg.pretrained else cfg.unfreeze_depth,
        pretrained=cfg.pretrained,
    )
    return built


def at_size(built: BuiltModel, size: int) -> keras.Model:
    """``built.model``'s layers and variables on a ``size`` x ``size`` input: training either
    trains both. Every nested functional model's input check is relaxed to its rank and
    channels (convolutions and global pooling do not depend on the spatial size; a Keras
    functional model otherwise refuses any input shape but the one it was built on)."""
    from keras.src.models.functional import Functional

    for layer in built.model._flatten_layers(include_self=True):
        for graph in (layer, getattr(layer, "_functional", None)):  # Sequential keeps its own
            if isinstance(graph, Functional) and len(graph.inputs) == 1:
                shape = graph.inputs[0].shape
                if len(shape) == 4:
                    graph.input_spec = keras.InputSpec(ndim=4, axes={-1: shape[-1]})
    inputs = keras.Input((size, size, 3), name="image")
    return keras.Model(inputs, built.model(inputs), name=f"{built.model.name}_{size}px")


def head_kernels(built: BuiltModel) -> list[keras.Variable]:
    """The head's dense kernels: what its L2 penalises."""
    return [layer.kernel for layer in built.head_layers if isinstance(layer, keras.layers.Dense)]


def head_variables(built: BuiltModel) -> list[keras.Variable]:
    return [v for layer in built.head_layers for v in layer.trainable_weights]
