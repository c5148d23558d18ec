"""From a real tiny study to an exported model and scored predictions on held-out real images.

One 1-trial, 2-fold, 1-epoch study at 32 px on 300 real images (through the real CLI) serves
every test; 100 other real images are the held-out set. TensorFlow processes run one at a time.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from search import export, predict
from search.data.images import resize_all
from tests.search.cli import ROOT, cli_env, run_cli

SIZE = 32


def run_module(module: str, *args: str, cwd: Path, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _write_npz(path: Path, images: np.ndarray, labels=None, class_names=None) -> Path:
    arrays = {"images": images}
    if labels is not None:
        arrays["labels"] = labels
    if class_names is not None:
        arrays["class_names"] = np.array(class_names)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def exported(study) -> Path:
    out = study["root"] / "model_all"
    done = run_module(
        "search.export",
        *("--study", "quick", "--storage", study["url"], "--out", str(out)),
        cwd=study["root"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[all] epoch 1/1" in done.stderr  # progress is shown
    return out


def test_export_writes_the_documented_folder(exported: Path, study) -> None:
    assert sorted(p.name for p in exported.iterdir()) == sorted(export.FILES + export.TRUST_FILES)
    config = json.loads((exported / "config.json").read_text())
    assert config["study"] == "quick" and config["trial"] == 0 and config["mode"] == "all_data"
    assert config["storage"] == study["url"] and config["image_size"] == SIZE
    assert config["data"]["spec"] == str(study["data"]) and len(config["data"]["fingerprint"]) == 64
    assert config["params"]["backbone"] == config["config"]["backbone"] == "small_cnn"
    assert config["epochs"] == 1 and len(config["fold_scores"]) == 2 and "date" in config
    assert json.loads((exported / "classes.json").read_text()) == study["names"]
    history = json.loads((exported / "history.json").read_text())
    assert [e["epoch"] for e in history["runs"][0]["epochs"]] == [0]
    assert len(history["cv"]["folds"]) == 2
    report = (exported / "report.md").read_text()
    assert "train loss" in report and "Cross-validation" in report
    # The trial trained under an augmentation level, so by default the model averages its
    # softmax over the 8 dihedral views of each image.
    assert config["tta"] == "dihedral" and "test-time views: the model averages" in report
    # every file gets the umask's mode (model.keras was once mkstemp's 0600)
    modes = {p.name: p.stat().st_mode & 0o777 for p in exported.iterdir()}
    assert len(set(modes.values())) == 1, modes
    import keras

    model = keras.models.load_model(exported / "model.keras")
    (inner,) = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    x = resize_all(study["held_images"][:6], SIZE).astype(np.float32)
    views = [np.rot90(v, k, axes=(1, 2)) for v in (x, x[:, :, ::-1]) for k in range(4)]
    mean = np.mean([inner.predict(np.ascontiguousarray(v), verbose=0) for v in views], axis=0)
    assert np.allclose(model.predict(x, verbose=0), mean, atol=1e-6)
    assert not np.allclose(inner.predict(x, verbose=0), mean, atol=1e-6)


def test_predict_metrics_match_sklearn_on_held_out_images(exported: Path, study) -> None:
    root = study["root"]
    out = run_module(
        "search.predict",
        *("--model", str(exported), "--data", str(study["held"]), "--tta", "--corruptions"),
        *("--out", str(root / "pred.csv"), "--metrics-out", str(root / "metrics.json")),
        cwd=root,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resized 100 images" in out.stderr  # 96 px files, 32 px model
    from trainer.corruptions import CORRUPTIONS

    said = out.stdout + out.stderr  # the table once, after a progress line per corruption
    assert all(said.count(f"  {name:<20} ") == 1 for name in CORRUPTIONS), said[-3000:]
    assert f"corruption {len(CORRUPTIONS)}/{len(CORRUPTIONS)}: " in out.stderr
    with open(root / "pred.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = study["names"]
    assert len(rows) == 100
    assert [r["true"] for r in rows] == [names[i] for i in study["held_labels"]]
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [names[i] for i in probs.argmax(axis=1)] == [r["predicted"] for r in rows]
    y_true = np.array([names.index(r["true"]) for r in rows])
    y_pred = np.array([names.index(r["predicted"]) for r in rows])
    metrics = json.loads((root / "metrics.json").read_text())
    present = np.union1d(y_true, y_pred)
    macro = {"labels": present, "average": "macro", "zero_division": 0}
    assert metrics["accuracy"] == accuracy_score(y_true, y_pred)
    assert metrics["balanced_accuracy"] == balanced_accuracy_score(y_true, y_pred)
    assert metrics["macro_precision"] == precision_score(y_true, y_pred, **macro)
    assert metrics["macro_recall"] == recall_score(y_true, y_pred, **macro)
    assert metrics["macro_f1"] == f1_score(y_true, y_pred, **macro)
    matrix = confusion_matrix(y_true, y_pred, labels=range(len(names)))
    assert metrics["confusion"]["matrix"] == matrix.tolist()
    for i in present:
        assert metrics["per_class"][names[i]]["support"] == int(np.sum(y_true == i))
    assert metrics["accuracy"] > 0.3  # 8 classes, the largest 22%: it learned something
    from search.reporting.calibration import expected_calibration_error

    # Expected calibration error over 15 equal-width bins, and its diagram beside --out.
    assert metrics["ece"] == pytest.approx(expected_calibration_error(probs, y_true), abs=1e-3)
    assert sum(metrics["reliability"]["counts"]) == 100
    assert (root / "pred_reliability.png").read_bytes()[:4] == b"\x89PNG"
    # The model has the dihedral views built in: --tta would only repeat them.
    assert "averages its 8 dihedral views itself" in out.stderr and "tta" not in metrics
    assert metrics["model_views"] == "dihedral" and metrics["tta_used"] is False
    rob = metrics["corruptions"]
    assert set(rob["per_corruption"]) == {
        "gaussian_blur",
        "gaussian_noise",
        "jpeg",
        "brightness_contrast",
        "stain_shift",
        "rotation",
    }
    accs = [r["accuracy"] for r in rob["per_corruption"].values()]
    assert rob["mean_accuracy"] == pytest.approx(np.mean(accs))
    assert rob["clean_accuracy"] == metrics["accuracy"]
    with Image.open(root / "pred_confusion.png") as png:
        assert png.format == "PNG" and png.width > 200
    assert "mean accuracy" in out.stdout


def test_the_export_is_calibrated_and_flags_images_unlike_its_training_data(
    exported: Path, study, tmp_path: Path
) -> None:
    from trainer.calibrate import load
    from trainer.shifts import shift

    config = json.loads((exported / "config.json").read_text())
    summary = config["trust"]
    # 10% of the 300 study images, stratified, never trained on.
    assert summary["calibration_images"] == 30
    history = json.loads((exported / "history.json").read_text())
    assert history["runs"][0]["n_images"] == 270
    assert summary["temperature"] == pytest.approx(load(exported).temperature)
    # The temperature is in the model: its own probabilities on the slice are the calibrated ones.
    import keras

    from trainer.trust import calibration_slice, fit_temperature, tempered

    names = study["names"]
    with np.load(study["data"]) as z:
        images, labels = resize_all(z["images"], SIZE), z["labels"].astype(np.int64)
    held = calibration_slice(labels, config["config"]["seed"])
    probs = keras.models.load_model(exported / "model.keras").predict(images[held], verbose=0)
    from trainer.readout import Reader

    logits = (
        Reader(keras.models.load_model(exported / "model.keras"))
        .read(images[held], config["tta"])
        .logits
    )
    np.testing.assert_allclose(probs, tempered(logits, 1.0), rtol=1e-4, atol=1e-5)
    # Fitted again on the model's own slice logits, the temperature is 1: it is already in them.
    seed = config["config"]["seed"]
    assert fit_temperature(logits, labels[held], seed) == pytest.approx(1.0, abs=0.02)
    assert len(names) == 8
    assert {s["coverage"] for s in summary["sets"]} == {0.9, 0.95, 0.99}
    report = (exported / "report.md").read_text()
    assert "## Trust" in report and "reliability.png" in report and "270 of the 300" in report
    # Held-out images and the same images as smooth noise: the noise is flagged.
    noise = _write_npz(
        tmp_path / "noise.npz",
        shift(study["held_images"], "noise"),
        study["held_labels"],
        study["names"],
    )
    shares = {}
    for name, data in (("held", study["held"]), ("noise", noise)):
        out = run_module(
            "search.predict",
            *("--model", str(exported), "--data", str(data), "--coverage", "0.9"),
            *(
                "--out",
                str(tmp_path / f"{name}.csv"),
                "--metrics-out",
                str(tmp_path / f"{name}.json"),
            ),
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        metrics = json.loads((tmp_path / f"{name}.json").read_text())
        with open(tmp_path / f"{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        flags = np.array([int(r["in_domain"]) for r in rows])
        scores = np.array([float(r["domain_score"]) for r in rows])
        assert np.array_equal(flags, (scores <= metrics["domain"]["threshold"]).astype(int))
        assert metrics["domain"]["flagged"] == int(np.sum(flags == 0))
        assert f"{metrics['domain']['flagged']} of 100 images look unlike" in out.stdout
        sets = [r["prediction_set"].split("|") for r in rows]
        assert all(r["predicted"] in s for r, s in zip(rows, sets, strict=True))
        assert metrics["mean_set_size"] == pytest.approx(np.mean([len(s) for s in sets]))
        covered = np.mean([r["true"] in s for r, s in zip(rows, sets, strict=True)])
        assert metrics["set_coverage"] == pytest.approx(covered)
        if name == "held":  # split conformal at 0.9 on 30 slice images, 100 new ones
            assert covered >= 0.75
        shares[name] = metrics["domain"]["share_flagged"]
    assert shares["noise"] >= 0.9 and shares["held"] <= 0.2
    assert "look unlike the images the model trained on" in out.stderr  # most were flagged


def test_a_coverage_the_calibration_slice_cannot_give_is_said(
    exported: Path, study, tmp_path: Path
) -> None:
    """Split conformal at 0.99 needs 99 calibration images; this export holds back 30, so every
    set holds every class, and predict says so and what to ask for instead."""
    out = run_module(
        "search.predict",
        *("--model", str(exported), "--data", str(study["held"]), "--coverage", "0.99"),
        *("--out", str(tmp_path / "p.csv"), "--metrics-out", str(tmp_path / "m.json")),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--coverage 0.99 needs at least 99 calibration images" in out.stderr
    assert "holds back 30: every set holds every class; ask for at most 0.96" in out.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mean_set_size"] == len(study["names"])


def test_an_export_from_too_few_images_says_why_it_has_no_trust_file(
    exported: Path, study, tmp_path: Path
) -> None:
    """The export's own reason (too few images to hold a slice back) is what predict repeats;
    exporting again would not help, so it does not say to."""
    import shutil

    small = tmp_path / "small"
    shutil.copytree(exported, small)
    (small / "trust.npz").unlink()
    config = json.loads((small / "config.json").read_text())
    reason = "not calibrated: 10% of 160 images is under the 20 a calibration slice needs"
    config["trust"] = {"missing": reason}
    (small / "config.json").write_text(json.dumps(config))
    out = run_module(
        "search.predict",
        *("--model", str(small), "--data", str(study["held"]), "--out", str(tmp_path / "p.csv")),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"has no trust.npz ({reason})" in out.stderr
    assert "export it again" not in out.stderr


def test_an_export_from_before_calibration_still_predicts_and_says_what_it_lacks(
    exported: Path, study, tmp_path: Path
) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(exported, old)
    (old / "trust.npz").unlink()
    out = run_module(
        "search.predict",
        *("--model", str(old), "--data", str(study["held"]), "--coverage", "0.95"),
        *("--out", str(tmp_path / "p.csv"), "--metrics-out", str(tmp_path / "m.json")),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "has no trust.npz" in out.stderr and "no prediction sets" in out.stderr
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100 and {r["domain_score"] for r in rows} == {""}
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert "ece" in metrics and "domain" not in metrics and "set_coverage" not in metrics


def test_a_new_study_starts_from_an_exports_backbone(exported: Path, study, tmp_path) -> None:
    """--weights DIR: the export's backbone, its weights, unfreeze depth searched, a new head."""
    import keras

    from tests.search.cli import load
    from trainer.readout import classifiers

    url = f"sqlite:///{tmp_path / 'adapt.db'}"
    out = run_cli(
        *("--study", "quick", "--name", "adapt", "--data", str(study["held"])),
        *("--storage", url, "--weights", str(exported), "--n-trials", "1", "--epochs", "1"),
        *("--folds", "2", "--image-size", str(SIZE), "--pruner", "none"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    backbone = json.loads((exported / "config.json").read_text())["config"]["backbone"]
    assert f"the search keeps its backbone, {backbone}" in out.stderr
    trial = load(url, "adapt").trials[0]
    config = trial.user_attrs["config"]
    assert config["backbone"] == backbone and f"unfreeze_{backbone}" in trial.params
    start = Path(config["weights"])
    assert start.parent == tmp_path / "artifacts" / "start_weights" and start.is_file()
    # The file holds the export's backbone weights.
    member = classifiers(keras.models.load_model(exported / "model.keras"))[0]
    source = next(layer for layer in member.layers if isinstance(layer, keras.Model))
    copy = keras.models.clone_model(source)
    copy.load_weights(str(start))
    for a, b in zip(copy.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_naming_a_folder_that_is_not_an_export_is_refused(study, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    out = run_cli(
        *("--study", "quick", "--data", str(study["held"]), "--storage", url),
        *("--weights", str(tmp_path / "empty"), "--n-trials", "1"),
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "is a folder but not an export (missing model.keras, config.json)" in out.stderr
    assert not (tmp_path / "x.db").exists()


def test_ensemble_export_loads_and_predicts(study, tmp_path: Path, caplog) -> None:
    out = study["root"] / "model_ensemble"
    done = run_module(
        "search.export",
        *("--study", "quick", "--storage", study["url"], "--out", str(out), "--ensemble"),
        "--no-tta",
        cwd=study["root"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[fold_0] epoch 1/1" in done.stderr and "[fold_1] epoch 1/1" in done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "ensemble" and config["tta"] == "none"
    # Single image files at the model's size (a fresh process loads a model without custom
    # objects in test_ranger_model_reloads_in_a_fresh_process_without_custom_objects).
    small = resize_all(study["held_images"][:3], SIZE)
    files = []
    for i, image in enumerate(small):
        Image.fromarray(image).save(tmp_path / f"cell_{i}.png")
        files.append(str(tmp_path / f"cell_{i}.png"))
    with caplog.at_level(logging.INFO):
        assert (
            predict.main(["--model", str(out), "--data", *files, "--out", str(tmp_path / "p.csv")])
            == 0
        )
    assert "resized" not in caplog.text
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["source"] for r in rows] == files and "true" not in rows[0]
    import keras

    model = keras.models.load_model(out / "model.keras")
    members = [layer for layer in model.layers if layer.name.startswith("member_")]
    assert len(members) == 2
    x = small.astype(np.float32)
    probs = model.predict(x, verbose=0)
    mean = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    assert np.allclose(probs, mean, atol=1e-6) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    csv_probs = np.array([[float(r[f"p_{c}"]) for c in study["names"]] for r in rows])
    assert np.allclose(csv_probs, probs, atol=1e-6)
    # A single-view model: search.predict --tta averages the 8 views and reports the change.
    metrics_out = tmp_path / "m.json"
    held = ["--data", str(study["held"]), "--out", str(tmp_path / "h.csv")]
    assert (
        predict.main(["--model", str(out), *held, "--tta", "--metrics-out", str(metrics_out)]) == 0
    )
    metrics = json.loads(metrics_out.read_text())
    tta = metrics["tta"]
    assert metrics["tta_used"] is True and metrics["model_views"] == "none"
    assert tta["views"] == 8 and tta["accuracy_with"] == metrics["accuracy"]
    assert tta["accuracy_change"] == pytest.approx(tta["accuracy_with"] - tta["accuracy_without"])
    x = resize_all(study["held_images"], SIZE).astype(np.float32)
    views = [np.rot90(v, k, axes=(1, 2)) for v in (x, x[:, :, ::-1]) for k in range(4)]
    mean = np.mean([model.predict(np.ascontiguousarray(v), verbose=0) for v in views], axis=0)
    assert tta["accuracy_with"] == float(np.mean(mean.argmax(1) == study["held_labels"]))


def test_wrong_size_is_resized_with_a_warning_or_refused(
    exported: Path, study, tmp_path: Path, caplog, capsys
) -> None:
    images = resize_all(study["held_images"][:12], 40)
    labels = study["held_labels"][:12]
    data = _write_npz(tmp_path / "big.npz", images, labels, study["names"])
    common = ["--model", str(exported), "--data", str(data), "--out", str(tmp_path / "p.csv")]
    with caplog.at_level(logging.WARNING):
        assert predict.main([*common, "--metrics-out", str(tmp_path / "m.json")]) == 0
    assert "resized 12 images (12 at 40x40) to the model's 32x32" in caplog.text
    assert json.loads((tmp_path / "m.json").read_text())["resized"] == 12
    capsys.readouterr()
    assert predict.main([*common, "--no-resize"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "40x40" in err and "expects 32x32" in err


def test_unknown_class_folder_and_bad_model_dir_exit_2(
    exported: Path, study, tmp_path: Path, capsys
) -> None:
    for cls in ("neutrophil", "macrophage"):
        (tmp_path / "cells" / cls).mkdir(parents=True)
        Image.fromarray(study["held_images"][0]).save(tmp_path / "cells" / cls / "a.png")
    out = str(tmp_path / "p.csv")
    assert (
        predict.main(["--model", str(exported), "--data", str(tmp_path / "cells"), "--out", out])
        == 2
    )
    assert "['macrophage'] are not classes of the model" in capsys.readouterr().err
    assert predict.main(["--model", str(tmp_path), "--data", str(study["held"]), "--out", out]) == 2
    assert "is not an export folder" in capsys.readouterr().err
    assert not Path(out).exists()


def test_export_refuses_other_data_and_existing_exports(exported: Path, study, capsys) -> None:
    other = study["root"] / "other_out"
    done = run_module(
        "search.export",
        *("--study", "quick", "--storage", study["url"], "--out", str(other)),
        *("--data", str(study["held"])),
        cwd=study["root"],
        timeout=120,
    )
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith("error: ") and "held.npz" in err and "study.npz" in err
    assert "fingerprint" in err and not other.exists()
    assert export.main(["--study", "quick", "--storage", study["url"], "--out", str(exported)]) == 2
    assert "already holds an export; pass --force" in capsys.readouterr().err
    # --force replaces it: a new model file and configuration, the same folder contents.
    replaced = study["root"] / "model_replaced"
    import shutil

    shutil.copytree(exported, replaced)
    before = {name: (replaced / name).stat().st_mtime_ns for name in export.FILES}
    common = ["--study", "quick", "--storage", study["url"], "--out", str(replaced)]
    assert export.main([*common, "--force", "--no-tta"]) == 0
    assert sorted(p.name for p in replaced.iterdir()) == sorted(export.FILES + export.TRUST_FILES)
    assert all((replaced / name).stat().st_mtime_ns != t for name, t in before.items())
    assert json.loads((replaced / "config.json").read_text())["tta"] == "none"
    assert export.main(["--study", "nope", "--storage", study["url"], "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "no study 'nope'" in err and "studies there: quick" in err


def test_ranger_model_reloads_in_a_fresh_process_without_custom_objects(
    real_small, tmp_path: Path
) -> None:
    from trainer.config import TrialConfig
    from trainer.final import fit_all, save_model
    from trainer.records import Dataset

    data = Dataset(
        resize_all(real_small.images[:96], SIZE), real_small.labels[:96], real_small.class_names
    )
    config = TrialConfig(backbone="small_cnn", image_size=SIZE, optimizer="ranger", batch_size=32)
    seen = []
    result = fit_all(config, data, 2, lr_schedule=[1e-3, 5e-4], progress=lambda *a: seen.append(a))
    assert [(name, e.epoch, total) for name, e, total in seen] == [("all", 0, 2), ("all", 1, 2)]
    assert [round(e.learning_rate, 6) for e in result.epochs] == [1e-3, 5e-4]
    path = save_model(result.model, tmp_path / "model.keras")
    x = data.images[:8].astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", result.model.predict(x, verbose=0))
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); p = np.load({str(tmp_path / 'p.npy')!r})\n"
        "assert 'trainer.optimizers' not in sys.modules\n"
        "print(float(np.abs(m.predict(x, verbose=0) - p).max()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-6


def test_help_imports_no_tensorflow() -> None:
    code = (
        "import sys\nfrom search import export, predict\n"
        "for m in (export, predict):\n"
        "    try:\n        m.main(['--help'])\n    except SystemExit as e:\n        assert e.code == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    for flag in ("--study", "--storage", "--data", "--out", "--trial", "--ensemble"):
        assert flag in out.stdout
    for flag in ("--model", "--tta", "--metrics-out", "--corruptions", "--no-resize"):
        assert flag in out.stdout


def _fold(k: int, best: int, rates: list[float], stopped: bool = False):
    from trainer.records import EpochMetrics, FoldResult

    epochs = tuple(
        EpochMetrics(e, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, lr, 1.0) for e, lr in enumerate(rates)
    )
    return FoldResult(k, epochs, best, stopped, False, 1.0, 1.0)


def test_epochs_are_the_rounded_median_and_rates_are_replayed() -> None:
    from trainer.final import final_epochs, replay_schedule

    folds = [
        _fold(0, 1, [1e-3, 1e-3, 5e-4]),
        _fold(1, 3, [1e-3] * 2 + [5e-4] * 2),
        _fold(2, 2, [2e-3] * 3),
    ]
    assert final_epochs(folds) == 3  # best epoch + 1: 2, 4, 3 -> median 3
    assert final_epochs(folds[:2]) == 3  # median 3.0
    assert final_epochs([_fold(0, 0, [1e-3]), _fold(1, 2, [1e-3] * 3)]) == 2  # 2.0
    assert final_epochs([_fold(0, 1, [1e-3] * 2), _fold(1, 2, [1e-3] * 3)]) == 2  # 2.5 -> even
    assert final_epochs([_fold(0, 5, [1e-3] * 6, stopped=True), _fold(1, 0, [1e-3])]) == 1
    assert replay_schedule(folds, 5) == [1e-3, 1e-3, 5e-4, 5e-4, 5e-4]


def test_a_pruned_trial_with_finished_folds_can_be_exported(study, tmp_path) -> None:
    """A --budget run whose search ended before any trial completed trains a pruned trial's
    configuration from its finished folds, and the command its failure names must work too."""
    import shutil

    import optuna

    db = tmp_path / "studies.db"
    shutil.copy(study["url"].removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    loaded = optuna.load_study(study_name="quick", storage=url)
    first = loaded.trials[0]
    trial = loaded.ask()
    for key in ("config", "fold_0"):
        trial.set_user_attr(key, first.user_attrs[key])
    loaded.tell(trial, state=optuna.trial.TrialState.PRUNED)
    out = tmp_path / "pruned"
    done = run_module(
        "search.export",
        *("--study", "quick", "--storage", url, "--trial", str(trial.number), "--out", str(out)),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "was pruned" in done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["trial"] == trial.number
    from trainer.records import FoldResult

    fold = FoldResult.from_dict(first.user_attrs["fold_0"])
    assert config["value"] == pytest.approx(fold.score("accuracy"))
