"""What differs between Keras 3's backends (TensorFlow, JAX, PyTorch), in one place.

The trainer is written in ``keras.ops``; the few things Keras does not abstract live here, each
with one implementation per backend: seeded random draws that depend on a batch's seed alone,
control flow that TensorFlow traces into a graph (JAX and PyTorch run the augmentation eagerly,
on the data thread, so they branch in Python), JPEG re-compression, copying a weight, telling an
out-of-memory error, and freeing accelerator memory between trials. TensorFlow is imported only
on the TensorFlow backend, so a JAX or PyTorch worker never loads it.

``KERAS_BACKEND`` chooses the backend before Keras is first imported (``search.run --backend``
sets it in every worker).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

NAME = keras.backend.backend()
TF = NAME == "tensorflow"

if TF:
    import tensorflow as tf


def check(wanted: str) -> None:
    """Raise ``InvalidConfig`` when this process runs Keras on another backend than ``wanted``
    ("" wants none in particular)."""
    from trainer.errors import InvalidConfig

    if wanted and wanted != NAME:
        raise InvalidConfig(
            f"the trial asks for the {wanted} backend but Keras runs on {NAME} in this process; "
            f"set KERAS_BACKEND={wanted} before Keras is imported (search.run --backend does)"
        )


def set_seed(seed: int) -> None:
    """``keras.utils.set_random_seed``, which also seeds TensorFlow whenever it is installed
    (importing it); on the other backends the same without TensorFlow."""
    if TF:
        keras.utils.set_random_seed(seed)
        return
    import random

    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if NAME == "torch":
        import torch

        torch.manual_seed(seed)


def batch_seed(seed: int, index: int) -> Any:
    """The [2] integer seed of one batch, as the backend's augmentation takes it."""
    if TF:
        return tf.constant([seed, index], tf.int64)
    return np.array([seed, index], np.int64)


def uniform(seed: Any, shape: Sequence[Any], salt: int) -> Any:
    """float32 draws in [0, 1) that depend only on ``seed`` (a [2] integer seed) and ``salt``.

    TensorFlow draws statelessly inside its graph; the other backends draw with NumPy from
    ``(seed, salt)`` (the same numbers on JAX and PyTorch) and hand the backend a tensor."""
    if TF:
        folded = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), salt)
        dims = tf.stack([tf.cast(d, tf.int32) for d in shape]) if len(shape) else ()
        return tf.random.stateless_uniform(dims, seed=folded)
    rng = _numpy_rng(seed, salt)
    return keras.ops.convert_to_tensor(rng.random(tuple(int(d) for d in shape), np.float32))


def _numpy_rng(seed: Any, salt: int) -> np.random.Generator:
    """The eager backends' generator for a [2] integer seed and a salt."""
    s0, s1 = (int(v) for v in np.asarray(seed).reshape(2))
    return np.random.default_rng([s0 & 0xFFFFFFFFFFFF, s1 & 0xFFFFFFFFFFFF, salt])


def integer_pairs(seed: Any, n: int) -> Any:
    """``n`` x 2 int64 seeds drawn from ``seed``: one state for each Keras ``SeedGenerator``."""
    if TF:
        return tf.random.stateless_uniform(
            (n, 2), seed=tf.cast(seed, tf.int64), minval=None, maxval=None, dtype=tf.int64
        )
    return _numpy_rng(seed, 999_331).integers(0, 2**31 - 1, size=(n, 2), dtype=np.int64)


def cond(pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """``true_fn()`` if ``pred`` else ``false_fn()``; a graph branch on TensorFlow."""
    if TF:
        return tf.cond(pred, true_fn, false_fn)
    return true_fn() if bool(keras.ops.convert_to_numpy(pred)) else false_fn()


def switch(index: Any, branches: Sequence[Callable[[], Any]]) -> Any:
    """``branches[index]()``, only that branch computed."""
    if TF:
        return tf.switch_case(index, list(branches))
    return branches[int(keras.ops.convert_to_numpy(index))]()


def rows_where(mask: Any) -> Any:
    """The indices (K,) of the true entries of a 1-D boolean ``mask``."""
    if TF:
        return tf.where(mask)[:, 0]
    return keras.ops.convert_to_tensor(np.flatnonzero(keras.ops.convert_to_numpy(mask)), "int32")


def jpeg(images: Any, quality: Any) -> Any:
    """Encode and decode each image (float 0..1) as JPEG at ``quality``; float 0..1 back."""
    if TF:
        return tf.map_fn(
            lambda im: tf.image.adjust_jpeg_quality(im, quality),
            images,
            fn_output_signature=tf.float32,
        )
    from PIL import Image

    q = int(keras.ops.convert_to_numpy(quality))
    out = []
    for im in keras.ops.convert_to_numpy(images):
        buffer = io.BytesIO()
        Image.fromarray(np.rint(im * 255.0).astype(np.uint8)).save(buffer, "JPEG", quality=q)
        out.append(np.asarray(Image.open(buffer), np.float32) / 255.0)
    return keras.ops.convert_to_tensor(np.stack(out))


def copy(value: Any) -> Any:
    """A copy of a variable's value that later updates of the variable do not change."""
    if TF:
        return tf.identity(value)
    if NAME == "torch":
        return value.detach().clone()
    return value  # JAX arrays are immutable: an update makes a new one


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the backend's accelerator (or host) out-of-memory error."""
    if TF:
        return isinstance(exc, tf.errors.ResourceExhaustedError)
    if NAME == "torch":
        import torch

        return isinstance(exc, torch.OutOfMemoryError)
    from jax.errors import JaxRuntimeError

    return isinstance(exc, JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(exc)


def out_of_memory_error(message: str) -> BaseException:
    """An error ``is_out_of_memory`` recognises (for the fault drills)."""
    if TF:
        return tf.errors.ResourceExhaustedError(None, None, message)
    if NAME == "torch":
        import torch

        return torch.OutOfMemoryError(message)
    from jax.errors import JaxRuntimeError

    return JaxRuntimeError(f"RESOURCE_EXHAUSTED: {message}")


GRAPH_OPTIMISATION = ("on", "lean", "off")
# Grappler's rewriting passes that 'lean' turns off; it keeps the remapper's kernel fusions.
LEAN_OFF = (
    "layout_optimizer", "constant_folding", "shape_optimization", "arithmetic_optimization",
    "dependency_optimization", "loop_optimization", "function_optimization",
)  # fmt: skip


def graph_optimisation(way: str) -> None:
    """How TensorFlow optimises a traced graph before its first run (process-wide; no-op on the
    other backends): 'on' (its defaults), 'lean' (``LEAN_OFF`` off) or 'off' (no Grappler)."""
    if way not in GRAPH_OPTIMISATION:
        raise ValueError(f"graph optimisation {way!r} is not one of {GRAPH_OPTIMISATION}")
    if not TF:
        return
    passes: dict[str, bool | None] = dict.fromkeys((*LEAN_OFF, "remapping"))  # None: default
    if way == "lean":
        passes |= dict.fromkeys(LEAN_OFF, False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": way == "off", **passes})


def free_memory(*, keep_compiled: bool = False) -> None:
    """Between trials: drop Keras's graph state and what the backend caches on the device;
    ``keep_compiled`` keeps JAX's compiled functions (models a worker reuses hold some)."""
    keras.backend.clear_session()
    if NAME == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    elif NAME == "jax" and not keep_compiled:
        import jax

        jax.clear_caches()
