"""Portable files (issue 39 items 1-2): search.export --format writes ONNX, LiteRT and a
SavedModel beside model.keras, each holding the test-time views and giving the Keras model's
probabilities on real images; search.predict --runtime onnx runs model.onnx with ONNX Runtime
(and, in a venv with no TensorFlow, JAX or PyTorch, with nothing else); every export records
its parameters, file sizes and latency."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.data.images import resize_all
from tests.search.cli import ROOT, cli_env
from tests.search.test_export_predict import SIZE, run_module

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def portable(study) -> Path:
    out = study["root"] / "model_portable"
    done = run_module(
        "search.export",
        *("--study", "quick", "--storage", study["url"], "--out", str(out)),
        *("--format", "keras,onnx,litert,savedmodel,onnx-int8,litert-int8"),
        cwd=study["root"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = done.stdout.strip().splitlines()[-1]  # the last line names every file written
    files = ("model.onnx", "model.tflite", "saved_model", "model.int8.onnx", "model.int8.tflite")
    assert all(name in listed for name in files), listed
    assert "Quantization parameters for tensor" not in done.stderr  # the converters kept quiet
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # with the module's export in six formats: about 1.5 min
def test_every_format_gives_the_keras_models_probabilities(portable: Path, study) -> None:
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    config = json.loads((portable / "config.json").read_text())
    assert config["formats"] == {
        "keras": "model.keras",
        "onnx": "model.onnx",
        "litert": "model.tflite",
        "savedmodel": "saved_model",
        "onnx-int8": "model.int8.onnx",
        "litert-int8": "model.int8.tflite",
    }
    assert config["tta"] == "dihedral"  # the views are inside every file
    x = resize_all(study["held_images"], SIZE).astype(np.float32)
    expected = keras.models.load_model(portable / "model.keras").predict(x, verbose=0)
    session = ort.InferenceSession(str(portable / "model.onnx"))
    onnx = session.run(None, {session.get_inputs()[0].name: x})[0]
    interpreter = tf.lite.Interpreter(model_path=str(portable / "model.tflite"))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    litert = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    loaded = tf.saved_model.load(str(portable / "saved_model"))  # kept: serve needs it alive
    saved = loaded.serve(x).numpy()
    for got in (onnx, litert, saved):
        assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
        assert np.abs(got - expected).max() < 1e-3


@pytest.mark.slow  # with the module's export in six formats: about 1.5 min
def test_every_export_records_its_cost(portable: Path) -> None:
    config = json.loads((portable / "config.json").read_text())
    cost = config["cost"]
    assert cost["params"] > 1000
    files = cost["files_bytes"]
    assert files["model.keras"] == (portable / "model.keras").stat().st_size
    assert files["model.onnx"] == (portable / "model.onnx").stat().st_size
    assert set(cost["latency_ms"]) == {"keras", "onnx", "litert", "onnx-int8", "litert-int8"}
    for row in [*cost["latency_ms"].values(), cost["latency_ms_without_views"]]:
        assert row["single_image_ms"] > 0 and row["batch8_ms"] > 0
        assert row["per_image_in_batch_ms"] == pytest.approx(row["batch8_ms"] / 8, rel=1e-2)
    # 8 views cost more than one pass of the same weights
    assert cost["latency_ms"]["keras"]["batch8_ms"] > cost["latency_ms_without_views"]["batch8_ms"]
    # int8 weights: a file under half its float twin's, scored on the held-out slice
    for float_file, int8_file in (
        ("model.onnx", "model.int8.onnx"),
        ("model.tflite", "model.int8.tflite"),
    ):
        assert files[int8_file] < 0.5 * files[float_file]
    held = cost["held_out"]
    assert set(held) == set(cost["latency_ms"])
    for name in ("onnx", "litert"):  # the float files: Keras' classes
        assert held[name]["same_class_as_keras"] == 1.0
        assert held[name]["accuracy"] == held["keras"]["accuracy"]
    report = (portable / "report.md").read_text()
    assert "held out from training" in report
    assert "## Cost" in report and "model.onnx" in report and "without the views" in report


@pytest.mark.slow  # with the module's export in six formats: about 1.5 min
def test_predict_with_onnx_runtime_matches_keras(portable: Path, study) -> None:
    root = study["root"]
    for runtime in ("keras", "onnx"):
        out = run_module(
            "search.predict",
            *("--model", str(portable), "--data", str(study["held"]), "--runtime", runtime),
            *("--out", str(root / f"pred_{runtime}.csv"), "--coverage", "0.9"),
            *("--metrics-out", str(root / f"metrics_{runtime}.json")),
            cwd=root,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    keras_rows, onnx_rows = _rows(root / "pred_keras.csv"), _rows(root / "pred_onnx.csv")
    assert [r["predicted"] for r in onnx_rows] == [r["predicted"] for r in keras_rows]
    names = study["names"]
    p = {k: np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
         for k, rows in (("keras", keras_rows), ("onnx", onnx_rows))}  # fmt: skip
    assert np.abs(p["keras"] - p["onnx"]).max() < 1e-3
    # the conformal sets need only probabilities and trust.npz; the flag needs Keras features
    assert all(r["prediction_set"] for r in onnx_rows)
    assert all(r["domain_score"] == "" for r in onnx_rows)
    metrics = json.loads((root / "metrics_onnx.json").read_text())
    assert metrics["runtime"] == "onnx" and "set_coverage" in metrics


def test_unknown_format_is_refused_before_training(study, tmp_path) -> None:
    out = run_module(
        "search.export",
        *("--study", "quick", "--storage", study["url"], "--out", str(tmp_path / "m")),
        *("--format", "keras,pickle"),
        cwd=study["root"],
    )
    assert out.returncode == 2 and "--format pickle is not known" in out.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_onnx_predict_runs_in_a_venv_with_no_deep_learning_framework(
    portable: Path,
    study,
    tmp_path: Path,
) -> None:
    """A venv with ONNX Runtime and the product's light dependencies, no TensorFlow, JAX,
    PyTorch or Keras: search.predict (auto) picks model.onnx and predicts as Keras does."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    light = ["numpy", "pillow", "scikit-learn", "scipy", "matplotlib", "onnxruntime"]
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *light], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    for module in ("tensorflow", "jax", "torch", "keras"):
        probe = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, f"{module} is importable in the runtime-only venv"
    env = {k: v for k, v in cli_env().items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONNOUSERSITE"] = "1"
    root = study["root"]
    out = subprocess.run(
        [str(py), "-m", "search.predict", "--model", str(portable), "--data", str(study["held"]),
         "--out", str(tmp_path / "pred.csv")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ONNX Runtime" in out.stderr
    reference = root / "pred_reference.csv"
    done = run_module(
        "search.predict",
        *("--model", str(portable), "--data", str(study["held"]), "--out", str(reference)),
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = _rows(tmp_path / "pred.csv"), _rows(reference)
    assert [r["predicted"] for r in got] == [r["predicted"] for r in want]
    names = study["names"]
    a = np.array([[float(r[f"p_{c}"]) for c in names] for r in got])
    b = np.array([[float(r[f"p_{c}"]) for c in names] for r in want])
    assert np.abs(a - b).max() < 1e-3
    assert os.path.getsize(tmp_path / "pred.csv") > 0
