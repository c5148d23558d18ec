"""Portable files of an exported model and what running it costs.

``write_formats`` writes the model in the formats asked for, with Keras 3's own
``model.export``: ``onnx`` (``model.onnx``, for ONNX Runtime; tf2onnx on TensorFlow),
``litert`` (``model.tflite``) and ``savedmodel`` (``saved_model/``), beside the ``model.keras``
every export has. The test-time views are layers of the model, so every file holds them: a caller
feeds images and gets the averaged probabilities.

``measure_cost`` gives the parameters, each file's size and the median latency of warm runs on
this machine, for one image and for a batch of 8, with the views and without them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from trainer import backend, steps
from trainer.errors import InvalidConfig

log = logging.getLogger(__name__)

FORMATS = ("keras", "onnx", "litert", "savedmodel", "onnx-int8", "litert-int8")
FILES = {
    "keras": "model.keras",
    "onnx": "model.onnx",
    "litert": "model.tflite",
    "savedmodel": "saved_model",
    "onnx-int8": "model.int8.onnx",
    "litert-int8": "model.int8.tflite",
}
KERAS_FORMAT = {"onnx": "onnx", "litert": "litert", "savedmodel": "tf_saved_model"}
NEEDS = {  # what each format needs beyond Keras, and the extra that installs it
    "onnx": ("onnx", "tf2onnx", "onnxruntime"),
    "litert": (),
    "savedmodel": (),
    "onnx-int8": ("onnx", "tf2onnx", "onnxruntime"),
    "litert-int8": (),
}
RUNNERS = {"onnx": "onnx", "onnx-int8": "onnx", "litert": "litert", "litert-int8": "litert"}
# Set before measuring, not tuned (docs/constants.md).
BATCH = 8  # images in the batched latency
REPEATS = 15  # timed warm runs per figure at most (their median is reported)
MIN_REPEATS = 3
FIGURE_SECONDS = 2.0  # stop timing a figure after this long once MIN_REPEATS ran


def parse_formats(text: str) -> tuple[str, ...]:
    """``keras,onnx`` -> ("keras", "onnx"); ``keras`` is always written (first)."""
    asked = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in asked if f not in FORMATS]
    if unknown:
        raise InvalidConfig(
            f"--format {','.join(unknown)} is not known; choose from {', '.join(FORMATS)} "
            "(comma-separated, e.g. keras,onnx)"
        )
    return tuple(dict.fromkeys(["keras", *asked]))


def check_formats(formats: Sequence[str]) -> None:
    """Refuse, before any training, a format this backend or this installation cannot write."""
    import importlib.util

    for fmt in formats:
        if fmt == "keras":
            continue
        if not backend.TF:
            raise InvalidConfig(
                f"--format {fmt} is written from the TensorFlow backend in this version; run the "
                "export with --backend tensorflow (or KERAS_BACKEND=tensorflow)"
            )
        missing = [m for m in NEEDS[fmt] if importlib.util.find_spec(m) is None]
        if missing:
            raise InvalidConfig(
                f"--format {fmt} needs {', '.join(missing)}: pip install 'bloodcell-search[export]'"
            )


def write_formats(model: keras.Model, out: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Write ``model`` in each of ``formats`` but ``keras`` (saved already) into ``out``;
    the paths written, by format."""
    written: dict[str, Path] = {}
    size = tuple(model.input_shape[1:])
    sample = np.zeros((1, *size), np.float32)
    model(sample, training=False)  # Keras' exporters need a model that has been called
    for fmt in formats:
        if fmt == "keras":
            continue
        target = out / FILES[fmt]
        temporary = out / f".partial-{FILES[fmt]}"  # the suffix Keras' exporter expects
        remove(temporary)
        try:
            with _quiet_converters():
                _export(model, temporary, fmt, out)
        except BaseException:  # Ctrl-C included: no .partial file left behind
            remove(temporary)
            raise
        remove(target)
        temporary.rename(target)
        written[fmt] = target
        log.info("wrote %s", target)
    return written


@contextlib.contextmanager
def _quiet_converters() -> Iterator[None]:
    """tf2onnx's INFO lines and ONNX Runtime's per-tensor quantization notes (on the root
    logger) are not the user's business: WARNING and above only while a file is converted."""
    loggers = [logging.getLogger(), logging.getLogger("tf2onnx")]
    levels = [x.level for x in loggers]
    for x in loggers:
        x.setLevel(max(x.level, logging.WARNING))
    try:
        yield
    finally:
        for x, level in zip(loggers, levels, strict=True):
            x.setLevel(level)


def _export(model: keras.Model, path: Path, fmt: str, out: Path) -> None:
    """One file: Keras' exporter, or (int8) post-training quantization of the weights to 8-bit
    integers, dynamic-range (activations quantized on the fly): LiteRT's converter with its
    default optimization, ONNX Runtime's ``quantize_dynamic`` of the float ONNX file."""
    if fmt == "litert-int8":
        import tensorflow as tf

        model.export(
            str(path), format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT]
        )
    elif fmt == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source = out / ".partial-float.onnx"
        try:
            model.export(str(source), format="onnx", verbose=False)
            quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8)
        finally:
            remove(source)
    else:
        model.export(str(path), format=KERAS_FORMAT[fmt], verbose=False)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def file_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def model_cost(run: Any, cost: str) -> float:
    """A trial's cost objective, measured on its built model (a ``trainer.loop.ModelRun``) and
    kept with it, so later trials of the architecture reuse the figure: ``params`` (its
    parameter count) or ``latency`` (median milliseconds of warm single-image inference on this
    worker's device, the pass validation runs, output copied to the host)."""
    kept = run.kept
    if cost not in kept.costs:
        if cost == "params":
            kept.costs[cost] = float(run.built.model.count_params())
        elif cost == "latency":
            predict, one = run.predict, run.data.images[:1]
            kept.costs[cost] = _median_ms(lambda: keras.ops.convert_to_numpy(predict(one)), REPEATS)
        else:
            raise InvalidConfig(f"cost {cost!r} is not one of latency, params")
    return kept.costs[cost]


def _median_ms(run: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of warm runs: ``repeats`` of them, fewer (at least MIN_REPEATS) when
    they take over FIGURE_SECONDS together (a big model with 8 views on a CPU)."""
    run()  # warm: traces and allocations out of the timing
    times: list[float] = []
    while len(times) < repeats and (len(times) < MIN_REPEATS or sum(times) < FIGURE_SECONDS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _device() -> str:
    """Where Keras runs inference here: a GPU when the backend sees one, else the CPU."""
    if backend.TF:
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if backend.NAME == "jax":
        import jax

        return "GPU" if jax.default_backend() == "gpu" else "CPU"
    import torch

    return "GPU" if torch.cuda.is_available() else "CPU"


def keras_runner(model: keras.Model) -> Callable[[np.ndarray], Any]:
    """The model's inference on a float32 batch, compiled as training validates
    (``trainer.steps.forward``: no resize at the model's own size)."""
    size = tuple(model.input_shape[1:])
    forward = steps.forward(model, int(size[0]), size, "float32", jit=False)
    return lambda x: keras.ops.convert_to_numpy(forward(x))


def onnx_runner(path: Path) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def litert_runner(path: Path) -> Callable[[np.ndarray], Any]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> Any:
        if tuple(detail["shape"]) != x.shape:
            interpreter.resize_tensor_input(detail["index"], x.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"])

    interpreter.allocate_tensors()
    return run


def cost_images(views: int) -> int:
    """Image forward passes ``measure_cost`` runs through Keras at most, for a deadline to keep
    back: one image and a batch, each warmed once and run ``REPEATS`` times, with ``views`` views
    and without (portable runtimes are not counted: a --budget export writes none)."""
    return (1 + REPEATS) * (1 + BATCH) * (views + 1)


def file_runners(model: keras.Model, written: dict[str, Path]) -> dict[str, Callable[..., Any]]:
    """float32 images -> probabilities, for the Keras model and each written file that has a
    runtime here (a SavedModel is TensorFlow's and is not run)."""
    runners: dict[str, Callable[[np.ndarray], Any]] = {"keras": keras_runner(model)}
    for fmt, path in written.items():
        kind = RUNNERS.get(fmt)
        if kind == "onnx":
            runners[fmt] = onnx_runner(path)
        elif kind == "litert":
            runners[fmt] = litert_runner(path)
    return runners


def agreement(
    runners: dict[str, Callable[..., Any]], images: np.ndarray, labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Each runner's accuracy on held-out ``images`` (the export's calibration slice, which
    the weights never trained on) and the share of its classes equal to Keras'."""
    out: dict[str, dict[str, float]] = {}
    reference = None
    for name, run in runners.items():
        probs = np.concatenate([run(images[s : s + 64]) for s in range(0, len(images), 64)])
        pred = probs.argmax(axis=1)
        reference = pred if reference is None else reference
        out[name] = {
            "accuracy": round(float(np.mean(pred == labels)), 4),
            "same_class_as_keras": round(float(np.mean(pred == reference)), 4),
        }
    return out


def measure_cost(
    model: keras.Model,
    base: keras.Model,
    out: Path,
    written: dict[str, Path],
    *,
    held: tuple[np.ndarray, np.ndarray] | None = None,
    repeats: int = REPEATS,
    seed: int = 0,
) -> dict[str, Any]:
    """Parameters, file sizes and CPU latency (median of ``repeats`` warm runs, milliseconds):
    the exported model (with its views) and ``base`` (the same weights without views) through
    Keras, and each portable file through its runtime; with ``held`` (float32 images at the
    model's size, labels), each one's accuracy on them."""
    size = tuple(model.input_shape[1:])
    rng = np.random.default_rng(seed)
    one = rng.uniform(0, 255, (1, *size)).astype(np.float32)
    batch = rng.uniform(0, 255, (BATCH, *size)).astype(np.float32)

    def latency(run: Callable[[np.ndarray], Any]) -> dict[str, float]:
        single = _median_ms(lambda: run(one), repeats)
        batched = _median_ms(lambda: run(batch), repeats)
        return {
            "single_image_ms": round(single, 3),
            f"batch{BATCH}_ms": round(batched, 3),
            "per_image_in_batch_ms": round(batched / BATCH, 3),
        }

    runners = file_runners(model, written)
    files = {FILES["keras"]: file_bytes(out / FILES["keras"])}
    files.update({FILES[f]: file_bytes(p) for f, p in written.items()})
    cost = {
        "params": int(model.count_params()),
        "files_bytes": files,
        "latency_ms": {name: latency(run) for name, run in runners.items()},
        "latency_ms_without_views": (
            latency(keras_runner(base)) if base is not model else "same: the model has no views"
        ),
        "measured_on": f"Keras on {backend.NAME} and each file's runtime, this machine's "
        f"{_device()}; median of {MIN_REPEATS} to {repeats} warm runs",
        "held_out": agreement(runners, *held) if held is not None and len(held[0]) else None,
    }
    return cost
