"""Running an exported model without a deep-learning framework: ``OnnxModel`` wraps an ONNX
Runtime session in the two attributes and one method ``search.predict`` uses of a Keras model
(``input_shape``, ``output_shape``, ``predict``), so scoring, views and corruptions run
unchanged on ``model.onnx``. Imports only numpy and onnxruntime."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def keras_available() -> bool:
    """Whether Keras and the backend it would load (KERAS_BACKEND, else TensorFlow) import."""
    import os

    name = os.environ.get("KERAS_BACKEND", "tensorflow")
    needed = ("keras", BACKEND_MODULES.get(name, name))
    return all(importlib.util.find_spec(m) is not None for m in needed)


class OnnxModel:
    """An ONNX file as ``search.predict`` calls a Keras model."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        output = self.session.get_outputs()[0]
        self.input_shape = (None, *(_dim(d) for d in self.input.shape[1:]))
        self.output_shape = (None, *(_dim(d) for d in output.shape[1:]))

    def predict(self, x: np.ndarray, batch_size: int = 128, verbose: Any = 0) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts = [
            self.session.run(None, {self.input.name: x[s : s + batch_size]})[0]
            for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.output_shape[-1]))


def _dim(d: Any) -> Any:
    return int(d) if isinstance(d, int) else None
