"""The compiled functions of the training loop, one implementation per Keras backend.

``train_step`` returns ``step(images, onehot, sample_w) -> loss`` that updates ``variables``
(a subset of the model's trainable variables: the head alone while warming up) with
``optimizer``: ``tf.function`` around a ``GradientTape`` on TensorFlow (XLA when asked; a plain
Keras ``Adam``/``AdamW`` updates each variable with TensorFlow's fused ``ResourceApplyAdam``
kernel, see ``fused_adam``), one
``jax.jit`` of ``stateless_call`` and ``stateless_apply`` on JAX (XLA is how JAX runs), autograd
on PyTorch (eager). ``forward`` returns ``fn(raw uint8 batch) -> probabilities`` in inference
mode, and ``statistics_pass`` a forward pass in training mode that leaves each trainable
BatchNorm layer's moving statistics equal to that batch's (momentum 0), for ``BatchNormRefresh``.
Each is built once per trial and reused by every fold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from trainer import backend
from trainer.batches import cast_and_resize

log = logging.getLogger(__name__)
Step = Callable[[Any, Any, Any], Any]


class Knobs:
    """Hyperparameters a kept model's training steps read at run time, not at tracing: label
    smoothing and the head's L2 (dropout is ``RateDropout``'s variable, weight decay the
    optimizer's). ``values`` hands them to JAX's jitted step, which reads no variable itself."""

    def __init__(self, kernels: Sequence[keras.Variable]) -> None:
        self.kernels = list(kernels)
        self.smoothing = keras.Variable(0.0, trainable=False, dtype="float32", name="smoothing")
        self.l2 = keras.Variable(0.0, trainable=False, dtype="float32", name="l2")

    def set(self, smoothing: float, l2: float) -> None:
        self.smoothing.assign(smoothing)
        self.l2.assign(l2)

    def values(self) -> list[Any]:
        return [self.smoothing.value, self.l2.value]


def _loss(model: keras.Model, probs: Any, onehot: Any, sample_w: Any, smoothing: float, losses):
    per_example = keras.losses.categorical_crossentropy(onehot, probs, label_smoothing=smoothing)
    loss = keras.ops.mean(per_example * sample_w)
    for extra in losses:
        loss = loss + keras.ops.cast(extra, "float32")
    return loss


def _knob_loss(probs: Any, onehot: Any, sample_w: Any, smoothing: Any, l2: Any, kernels, losses):
    """``_loss`` with label smoothing and the head's L2 as tensors (Keras' own formulas)."""
    onehot = keras.ops.cast(onehot, probs.dtype)
    n = keras.ops.cast(keras.ops.shape(onehot)[-1], probs.dtype)
    smoothing = keras.ops.cast(smoothing, probs.dtype)
    target = onehot * (1.0 - smoothing) + smoothing / n
    per_example = keras.losses.categorical_crossentropy(target, probs)
    loss = keras.ops.mean(per_example * sample_w)
    for kernel in kernels:
        loss = loss + keras.ops.cast(l2 * keras.ops.sum(keras.ops.square(kernel)), "float32")
    for extra in losses:
        loss = loss + keras.ops.cast(extra, "float32")
    return loss


def train_step(
    model: keras.Model,
    variables: Sequence[keras.Variable],
    optimizer: keras.optimizers.Optimizer,
    *,
    smoothing: float,
    size: int,
    n_classes: int,
    jit: bool,
    knobs: Knobs | None = None,
) -> Step:
    """The training step on the current backend (see the module docstring); with ``knobs``,
    label smoothing and the head's L2 are read from them at every step (``smoothing`` unused)."""
    if backend.NAME == "jax":
        return _jax_step(model, variables, optimizer, smoothing, knobs)
    if backend.NAME == "torch":
        return _torch_step(model, variables, optimizer, smoothing, knobs)
    return _TfStep(model, variables, optimizer, smoothing, size, n_classes, jit, knobs)


def _step_loss(model, probs, onehot, sample_w, smoothing, losses, knobs):
    """The loss a TensorFlow or PyTorch step minimises: with ``knobs`` (read as variables), or
    with the traced-in smoothing and the model's own L2 losses. (JAX passes values instead.)"""
    if knobs is None:
        return _loss(model, probs, onehot, sample_w, smoothing, losses)
    return _knob_loss(probs, onehot, sample_w, knobs.smoothing, knobs.l2, knobs.kernels, losses)


class _TfStep:
    """A ``tf.function`` step; an XLA step that fails to compile falls back to graph mode."""

    def __init__(self, model, variables, optimizer, smoothing, size, n_classes, jit, knobs) -> None:
        import tensorflow as tf

        self.tf = tf
        scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        variables = list(variables)

        # The fused Adam update, or None for Keras's own; read when the step is traced.
        self.fused = fused_adam(optimizer)

        def step(images, onehot, sample_w):
            with tf.GradientTape() as tape:
                probs = model(images, training=True)
                loss = _step_loss(model, probs, onehot, sample_w, smoothing, model.losses, knobs)
                scaled = optimizer.scale_loss(loss) if scale else loss
            grads = tape.gradient(scaled, variables)
            if self.fused is not None:
                self.fused(grads, variables)
            else:
                optimizer.apply_gradients(zip(grads, variables, strict=True))
            return loss

        self._python = step
        self._spec = (
            tf.TensorSpec((None, size, size, 3), tf.float32),
            tf.TensorSpec((None, n_classes), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        )
        self.jit = jit
        self._compiled = tf.function(step, input_signature=self._spec, jit_compile=jit)
        self._checked = not jit

    def __call__(self, images, onehot, sample_w):
        if self._checked:
            return self._compiled(images, onehot, sample_w)
        errors = self.tf.errors
        try:
            loss = self._compiled(images, onehot, sample_w)
        except (errors.InvalidArgumentError, errors.UnimplementedError) as exc:
            log.warning(
                "XLA could not compile the training step (%s); continuing without XLA",
                str(exc).splitlines()[0][:200],
            )
            self.jit = False
            self._compiled = self.tf.function(self._python, input_signature=self._spec)
            loss = self._compiled(images, onehot, sample_w)
        self._checked = True
        return loss


def fused_adam(optimizer: keras.optimizers.Optimizer) -> Callable[[Any, Any], None] | None:
    """``apply(grads, variables)`` doing what ``optimizer.apply_gradients`` does for a plain Keras
    ``Adam`` or ``AdamW`` on TensorFlow, one fused ``ResourceApplyAdam`` op per variable on the
    optimizer's own moment slots; None for anything else (other optimizers, AMSGrad, EMA,
    clipping, gradient accumulation, loss scaling).

    Keras 3 builds Adam's update from about 40 graph ops per variable; the fused kernel (what
    Keras 2 used) computes the same formula (``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) +
    eps)``) in one. On MobileNetV3Small that halves the training step's graph, and so its
    tracing and graph optimisation on every trial's first step (docs/constants.md).
    The decoupled decay is Keras's: ``v -= v * wd * lr`` before the update, on the variables
    ``_use_weight_decay`` admits; constraints are applied after it and ``iterations`` counts the
    step, as in ``apply``.
    """
    if type(optimizer) not in (keras.optimizers.Adam, keras.optimizers.AdamW):
        return None
    if (
        optimizer.amsgrad
        or optimizer.use_ema
        or optimizer.gradient_accumulation_steps
        or optimizer.clipnorm
        or optimizer.clipvalue
        or optimizer.global_clipnorm
        or optimizer.loss_scale_factor
    ):
        return None
    import tensorflow as tf

    decay = optimizer.weight_decay  # a float, or a variable read at each step (a kept model's)
    decayed = isinstance(decay, keras.Variable) or bool(decay)

    def apply(grads, variables) -> None:
        lr = tf.cast(optimizer.learning_rate, tf.float32)
        t = tf.cast(optimizer.iterations + 1, tf.float32)
        beta_1_power = tf.pow(tf.constant(optimizer.beta_1, tf.float32), t)
        beta_2_power = tf.pow(tf.constant(optimizer.beta_2, tf.float32), t)
        for grad, variable in zip(grads, variables, strict=True):
            if grad is None:
                continue
            value = variable.value  # the tf.Variable
            dtype = value.dtype
            if decayed and optimizer._use_weight_decay(variable):
                value.assign_sub(value * tf.cast(decay * lr, dtype))
            index = optimizer._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=value.handle,
                m=optimizer._momentums[index].value.handle,
                v=optimizer._velocities[index].value.handle,
                beta1_power=tf.cast(beta_1_power, dtype),
                beta2_power=tf.cast(beta_2_power, dtype),
                lr=tf.cast(lr, dtype),
                beta1=tf.cast(optimizer.beta_1, dtype),
                beta2=tf.cast(optimizer.beta_2, dtype),
                epsilon=tf.cast(optimizer.epsilon, dtype),
                grad=tf.cast(grad, dtype),
            )
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable))
        optimizer.iterations.assign_add(1)

    return apply


def _jax_step(model, variables, optimizer, smoothing, knobs) -> Step:
    import jax

    trainable = list(model.trainable_variables)
    chosen = {id(v) for v in variables}
    mine = [i for i, v in enumerate(trainable) if id(v) in chosen]
    others = [i for i, v in enumerate(trainable) if id(v) not in chosen]
    phase_vars = [trainable[i] for i in mine]
    other_vars = [trainable[i] for i in others]
    non_trainable = list(model.non_trainable_variables)
    opt_vars = list(optimizer.variables)
    scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    kernel_index = [
        next(i for i, v in enumerate(trainable) if v is k) for k in (knobs.kernels if knobs else [])
    ]

    def compute(phase_values, other_values, nt_values, opt_values, knob_values, x, y, w):
        values: list[Any] = [None] * len(trainable)
        for i, v in zip(mine, phase_values, strict=True):
            values[i] = v
        for i, v in zip(others, other_values, strict=True):
            values[i] = v
        probs, nt_new, losses = model.stateless_call(
            values, nt_values, x, training=True, return_losses=True
        )
        if knobs is None:
            loss = _loss(model, probs, y, w, smoothing, losses)
        else:
            kernels = [values[i] for i in kernel_index]
            loss = _knob_loss(probs, y, w, *knob_values, kernels, losses)
        scaled = loss
        if scale:
            with keras.StatelessScope(state_mapping=list(zip(opt_vars, opt_values, strict=True))):
                scaled = optimizer.scale_loss(loss)
        return scaled, (loss, nt_new)

    grad = jax.value_and_grad(compute, has_aux=True)

    @jax.jit
    def step(phase_values, other_values, nt_values, opt_values, knob_values, x, y, w):
        (_, (loss, nt_new)), grads = grad(
            phase_values, other_values, nt_values, opt_values, knob_values, x, y, w
        )
        new_values, new_opt = optimizer.stateless_apply(opt_values, grads, phase_values)
        return loss, new_values, nt_new, new_opt

    def run(images, onehot, sample_w):
        loss, new_values, nt_new, new_opt = step(
            [v.value for v in phase_vars],
            [v.value for v in other_vars],
            [v.value for v in non_trainable],
            [v.value for v in opt_vars],
            knobs.values() if knobs is not None else [],
            images,
            onehot,
            sample_w,
        )
        for group, new in ((phase_vars, new_values), (non_trainable, nt_new), (opt_vars, new_opt)):
            for variable, value in zip(group, new, strict=True):
                variable.assign(value)
        return loss

    return run


def _torch_step(model, variables, optimizer, smoothing, knobs) -> Step:
    import torch

    variables = list(variables)
    scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def run(images, onehot, sample_w):
        model.zero_grad(set_to_none=True)
        probs = model(images, training=True)
        loss = _step_loss(model, probs, onehot, sample_w, smoothing, model.losses, knobs)
        scaled = optimizer.scale_loss(loss) if scale else loss
        scaled.backward()
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            optimizer.apply(grads, variables)
        return loss.detach()

    return run


def forward(
    model: keras.Model, size: int, raw_shape: tuple[int, ...], raw_dtype: str, *, jit: bool
):
    """``fn(raw uint8 batch) -> class probabilities`` (inference mode) on the current backend."""
    if backend.TF:
        import tensorflow as tf

        infer = tf.function(  # XLA (when asked) on the model only: it cannot compile resizing
            lambda x: model(x, training=False), jit_compile=jit
        )
        return tf.function(
            lambda raw: infer(cast_and_resize(raw, size)),
            input_signature=(tf.TensorSpec((None, *raw_shape), tf.as_dtype(raw_dtype)),),
        )
    if backend.NAME == "jax":
        import jax

        infer = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])

        def predict(raw):
            x = cast_and_resize(keras.ops.convert_to_tensor(raw), size)
            return infer(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                x,
            )

        return predict
    import torch

    def predict_torch(raw):
        with torch.no_grad():
            return model(cast_and_resize(keras.ops.convert_to_tensor(raw), size), training=False)

    return predict_torch


def statistics_pass(
    model: keras.Model,
    layers: Sequence[keras.layers.BatchNormalization],
    size: int,
    raw_shape: tuple[int, ...],
    raw_dtype: str,
) -> Callable[[np.ndarray], None]:
    """``fn(raw batch)``: a training-mode forward pass after which every layer in ``layers`` holds
    exactly that batch's mean and variance as its moving statistics (momentum 0). It serves
    later trials of the same model too, whatever momentum they set."""

    def momentum_zero(fn: Callable[[], Any]) -> Any:
        saved = [layer.momentum for layer in layers]  # the run's, read at each call
        for layer in layers:
            layer.momentum = 0.0
        try:
            return fn()
        finally:
            for layer, momentum in zip(layers, saved, strict=True):
                layer.momentum = momentum

    if backend.TF:
        import tensorflow as tf

        traced = tf.function(
            lambda raw: model(cast_and_resize(raw, size), training=True),
            input_signature=(tf.TensorSpec((None, *raw_shape), tf.as_dtype(raw_dtype)),),
        )
        # traced once with momentum 0: each call stores exactly this batch's statistics
        momentum_zero(traced.get_concrete_function)

        def run_tf(raw):
            traced(raw)

        return run_tf
    if backend.NAME == "jax":
        import jax

        non_trainable = list(model.non_trainable_variables)
        stats = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=True)[1])

        def run_jax(raw):
            x = cast_and_resize(keras.ops.convert_to_tensor(raw), size)
            new = momentum_zero(
                lambda: stats(
                    [v.value for v in model.trainable_variables],
                    [v.value for v in non_trainable],
                    x,
                )
            )
            for variable, value in zip(non_trainable, new, strict=True):
                variable.assign(value)

        return run_jax
    import torch

    def run_torch(raw):
        with torch.no_grad():
            x = cast_and_resize(keras.ops.convert_to_tensor(raw), size)
            momentum_zero(lambda: model(x, training=True))

    return run_torch
