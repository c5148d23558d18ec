"""``python -m search.predict --model DIR --data PATH``: classify images with an exported model.

Reads ``DIR/model.keras``, ``DIR/config.json`` and ``DIR/classes.json`` (written by
``search.export``) and writes one CSV row per image (source, predicted class, probability of
every class, the true class when known). With labels it also scores the predictions, all with
scikit-learn on the predicted classes:

- ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in the labels);
- ``macro_precision/recall/f1``: unweighted means over the classes that occur in the labels or
  the predictions (``zero_division=0``), so a test set without some class is not penalised for
  it; ``per_class`` is ``classification_report(output_dict=True)`` over the same classes;
- ``confusion``: the full class x class matrix (rows true, columns predicted), also as a PNG.

``--tta`` averages the softmax over the views of the model's symmetry (config.json: the 8
dihedral transforms, the image and its mirror, or none where turns change the label) and reports
how accuracy changed; a model exported with test-time views (config.json ``tta`` other than
``none``) does this itself, and ``--tta`` is ignored. ``--corruptions`` repeats the prediction under each corruption of
``trainer/corruptions.py`` (seeded, ``--corruption-seed``) in the same mode (TTA or not),
reporting per-corruption accuracy, their mean and how many predictions stayed the same; the
corruptions act on the images as the model sees them (after any resize), as a training-time
robustness metric would.

An export with ``trust.npz`` (all made since calibration existed) gives calibrated probabilities
(the temperature is in the model), the columns ``domain_score``/``in_domain`` (1: like the
training images; the threshold keeps at least 95% of in-domain images) and, with ``--coverage P``,
``prediction_set`` (split-conformal sets holding the true class with probability P). With labels
``--metrics-out`` adds ``ece`` (15 equal-width bins; the reliability diagram goes to
``<out stem>_reliability.png``), ``abstention`` (accuracy on the most confident shares),
``set_coverage`` and ``mean_set_size``. An older export predicts as before and says what it
lacks. Exit codes: 0 done, 1 an output could not be written, 2 bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.cli import EXIT_FATAL as EXIT_FAILED
from search.cli import EXIT_OK, Parser, setup_logging, usage_error
from search.reporting.scores import VIEW_COUNT, predict_probs, robustness, score, summary_text
from search.text import counted

log = logging.getLogger("search.predict")


def _scoring_args(p: argparse.ArgumentParser) -> None:
    """--help's flags: test-time views, corruptions, resizing, prediction sets."""
    p.add_argument(
        "--tta",
        action="store_true",
        help="average over the views of the model's symmetry (config.json: the 8 flips and "
        "quarter turns, or the image and its mirror; nothing where turns change the label) and "
        "report the change in accuracy",
    )
    p.add_argument(
        "--corruptions",
        action="store_true",
        help="also evaluate under blur, noise, JPEG, brightness/contrast, stain shift and "
        "rotation (seeded), reporting accuracy per corruption and the mean",
    )
    p.add_argument(
        "--corruption-seed", type=int, default=0, metavar="S", help="corruptions' seed (default 0)"
    )
    p.add_argument(
        "--no-resize",
        action="store_true",
        help="refuse images whose size differs from the model's instead of resizing them",
    )
    p.add_argument(
        "--coverage",
        type=float,
        default=None,
        metavar="P",
        help="also give each image the smallest set of classes that holds the true class with "
        "probability P (e.g. 0.95; split conformal on the export's calibration slice): the CSV "
        "column prediction_set, and set_coverage/mean_set_size in --metrics-out with labels",
    )


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m search.predict",
        description="Predict classes and probabilities with a model from search.export, and "
        "score them when the inputs carry labels.",
        epilog="Images of another size than the model's are resized (Lanczos, whole frame, no "
        "crop) with a warning; --no-resize refuses them instead (exit code 2). Exit codes: 0 "
        "done, 1 an output could not be written, 2 bad usage or input.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="folder written by search.export")
    p.add_argument(
        "--data",
        nargs="+",
        default=None,
        metavar="PATH",
        help="an .npz (images[/labels][/class_names]), a folder of class folders (labels from "
        "the folder names), a folder of images, or image files (default: the study's own "
        "training data, with a warning that its scores are optimistic)",
    )
    p.add_argument(
        "--out",
        default="predictions.csv",
        metavar="CSV",
        help="predictions file (default predictions.csv)",
    )
    p.add_argument(
        "--metrics-out", default=None, metavar="JSON", help="write the metrics as JSON here"
    )
    p.add_argument(
        "--confusion-out",
        default=None,
        metavar="PNG",
        help="confusion-matrix picture when labels are known (default: next to --out, "
        "named <out stem>_confusion.png)",
    )
    _scoring_args(p)
    p.add_argument(
        "--runtime",
        choices=("auto", "keras", "onnx"),
        default="auto",
        help="keras: model.keras through Keras; onnx: model.onnx (search.export --format onnx) "
        "through ONNX Runtime, with no TensorFlow, JAX or PyTorch needed (no domain_score: "
        "that reads the Keras model's features); auto (default): keras when a Keras backend "
        "is installed, else onnx when the folder has model.onnx",
    )
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="default 128")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    return p


def read_export(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """config.json and classes.json of an export folder; ValueError says what is missing."""
    missing = [
        n for n in ("model.keras", "config.json", "classes.json") if not (folder / n).is_file()
    ]
    if not folder.is_dir() or missing:
        raise ValueError(
            f"--model {folder} is not an export folder (missing {', '.join(missing) or 'folder'}); "
            "make one with python -m search.export --study NAME --out DIR"
        )
    try:
        config = json.loads((folder / "config.json").read_text())
        classes = json.loads((folder / "classes.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {folder}'s config.json/classes.json ({exc})") from exc
    if not isinstance(classes, list) or not classes or int(config.get("image_size", 0)) < 1:
        raise ValueError(
            f"{folder}: classes.json must list class names and config.json hold image_size"
        )
    return config, [str(c) for c in classes]


def predictions_csv(
    sources: Sequence[str],
    probs: np.ndarray,
    class_names: Sequence[str],
    labels: np.ndarray | None,
    domain: np.ndarray | None = None,
    threshold: float | None = None,
    sets: np.ndarray | None = None,
) -> str:
    """index, source, predicted, [true,] p_<class>..., domain_score, in_domain, [prediction_set]
    (probabilities with 8 significant digits; the domain columns are empty for a model without
    an in-domain detector, the set's classes joined by ``|``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["index", "source", "predicted"] + (["true"] if labels is not None else [])
    header += [f"p_{c}" for c in class_names] + ["domain_score", "in_domain"]
    writer.writerow(header + (["prediction_set"] if sets is not None else []))
    pred = probs.argmax(axis=1)
    for i, source in enumerate(sources):
        row: list[Any] = [i, source, class_names[pred[i]]]
        if labels is not None:
            row.append(class_names[labels[i]])
        row += [f"{p:.8g}" for p in probs[i]]
        if domain is not None and threshold is not None:
            row += [f"{domain[i]:.6g}", int(domain[i] <= threshold)]
        else:
            row += ["", ""]
        if sets is not None:
            row.append("|".join(class_names[int(k)] for k in np.flatnonzero(sets[i])))
        writer.writerow(row)
    return buffer.getvalue()


def domain_metrics(
    domain: np.ndarray, threshold: float, pred: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    """How many images the in-domain flag let through, and with labels the accuracy on each side."""
    inside = domain <= threshold
    out: dict[str, Any] = {
        "threshold": threshold,
        "in_domain": int(inside.sum()),
        "flagged": int((~inside).sum()),
        "share_flagged": float(np.mean(~inside)) if len(domain) else 0.0,
    }
    if labels is not None:
        right = pred == labels
        for key, mask in (("accuracy_in_domain", inside), ("accuracy_flagged", ~inside)):
            out[key] = float(right[mask].mean()) if mask.any() else None
    return out


def trust_text(metrics: dict[str, Any]) -> list[str]:
    """Lines for the terminal: the in-domain count and the prediction sets."""
    lines = []
    domain = metrics.get("domain")
    if domain:
        lines.append(
            f"{domain['flagged']} of {metrics['n_images']} images look unlike the training data "
            f"(domain_score above {domain['threshold']:.3f}; in_domain 0 in the CSV)"
        )
    if "mean_set_size" in metrics:
        line = (
            f"prediction sets at {metrics['coverage']:.0%} coverage: "
            f"{metrics['mean_set_size']:.2f} classes on average"
        )
        if "set_coverage" in metrics:
            line += f", the true class in {metrics['set_coverage']:.1%} of them"
        lines.append(line)
    return lines


@dataclass
class Opened:
    """What a prediction run reads before predicting: the export, its trust record, the inputs."""

    folder: Path
    config: dict[str, Any]
    names: list[str]
    trust: Any  # trainer.calibrate.Trust, None without one
    trust_said: bool  # a warning already said why there is none
    data: list[str]
    inputs: Any  # search.data.inputs.Inputs
    model: Any  # keras.Model, or search.runtime.OnnxModel
    runtime: str = "keras"

    @property
    def views(self) -> str:
        return str(self.config.get("tta", "none"))

    @property
    def symmetry(self) -> str:
        # Exports made before it was recorded trained dihedral.
        cfg = dict(self.config.get("config", {}))
        return str(self.config.get("symmetry", cfg.get("symmetry", "dihedral")))

    @property
    def colour(self) -> str:
        cfg = dict(self.config.get("config", {}))
        return str(self.config.get("colour", cfg.get("colour", "shift")))


def _open(args: argparse.Namespace) -> Opened:
    """Read the export, its trust record, the inputs and the model; UsageError says what is
    wrong."""
    from search.cli import UsageError
    from search.data import DataError
    from search.data.inputs import read_inputs
    from trainer.calibrate import load as load_trust

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.coverage is not None and not 0.0 < args.coverage < 1.0:
        raise UsageError(f"--coverage must be between 0 and 1, e.g. 0.95; got {args.coverage}")
    folder = Path(args.model).expanduser()
    try:
        config, names = read_export(folder)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    trust, said = None, False
    try:
        trust = load_trust(folder)
    except ValueError as exc:
        log.warning(
            "warning: %s; predicting without the in-domain flag and prediction sets (the "
            "model's own calibration is in model.keras and still applies)",
            exc,
        )
        said = True
    data = list(args.data or [])
    if not data:
        spec = str(config.get("data", {}).get("spec", ""))
        if not spec:
            raise UsageError("--data is required (the export does not name its study's data)")
        log.warning(
            "warning: no --data: predicting the study's own data %r; the model trained on "
            "these images, so its scores are optimistic, not a test score",
            spec,
        )
        data = [spec]
    size = int(config["image_size"])
    try:
        inputs = read_inputs(data, names, size, resize=not args.no_resize)
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    log.info("read %s from %s", counted(len(inputs.images), "image"), " ".join(data))
    runtime = _runtime(args.runtime, folder)
    model = _load_model(folder, runtime)
    expected = (size, size, 3)
    if tuple(model.input_shape[1:]) != expected or model.output_shape[-1] != len(names):
        raise UsageError(
            f"{folder}: the model takes {model.input_shape[1:]} and gives {model.output_shape[-1]} "
            f"classes, but config.json/classes.json say {expected} and {len(names)}"
        )
    return Opened(folder, config, names, trust, said, data, inputs, model, runtime)


def _runtime(asked: str, folder: Path) -> str:
    """--runtime, with auto resolved: Keras when a backend is installed, else ONNX Runtime
    when the folder has model.onnx."""
    from search.cli import UsageError
    from search.runtime import keras_available

    if asked != "auto":
        if asked == "onnx" and not (folder / "model.onnx").is_file():
            raise UsageError(
                f"--runtime onnx: {folder} has no model.onnx; export it with "
                "python -m search.export ... --format keras,onnx"
            )
        return asked
    if keras_available() or not (folder / "model.onnx").is_file():
        return "keras"
    log.info("no Keras backend is installed: running %s with ONNX Runtime", folder / "model.onnx")
    return "onnx"


def _load_model(folder: Path, runtime: str) -> Any:
    from search.cli import UsageError

    if runtime == "onnx":
        from search.runtime import OnnxModel

        try:
            return OnnxModel(folder / "model.onnx")
        except ImportError as exc:
            raise UsageError(
                f"--runtime onnx needs ONNX Runtime: pip install onnxruntime ({exc})"
            ) from exc
        except Exception as exc:
            raise UsageError(
                f"cannot load {folder / 'model.onnx'} ({type(exc).__name__}: {exc})"
            ) from exc
    try:
        import keras
    except ImportError as exc:
        raise UsageError(
            f"Keras cannot load here ({exc}); install a backend (pip install "
            "'bloodcell-search[cpu]'), or export with --format keras,onnx and predict with "
            "--runtime onnx"
        ) from exc
    try:
        return keras.models.load_model(folder / "model.keras")
    except Exception as exc:
        raise UsageError(
            f"cannot load {folder / 'model.keras'} ({type(exc).__name__}: {exc})"
        ) from exc


def _use_tta(asked: bool, opened: Opened) -> bool:
    """--tta, unless the model averages its views itself or has none to average."""
    if asked and opened.views != "none":
        log.warning(
            "%s averages its %d %s views itself (config.json: tta %s); --tta adds nothing and "
            "is ignored",
            opened.folder,
            VIEW_COUNT.get(opened.views, 0),
            opened.views,
            opened.views,
        )
        return False
    if asked and opened.symmetry == "none":
        log.warning(
            "%s was trained for images whose turns and mirrors change the label (symmetry "
            "none): --tta has no views to average and is ignored",
            opened.folder,
        )
        return False
    return asked


def _domain(opened: Opened, batch: int, coverage: bool) -> np.ndarray | None:
    """Each image's domain_score, None (and why, once) when the export cannot give them."""
    if opened.trust is not None and opened.runtime == "onnx":
        log.warning(
            "warning: domain_score/in_domain are empty under --runtime onnx: the in-domain flag "
            "reads the Keras model's pooled features, which model.onnx does not output"
        )
        return None
    from trainer.errors import InvalidConfig
    from trainer.readout import Reader

    if opened.trust is None:
        missing = dict(opened.config.get("trust") or {}).get("missing")
        if not opened.trust_said and missing:  # the export says why: too few images
            log.warning(
                "warning: %s has no trust.npz (%s): domain_score/in_domain are empty%s; more "
                "training images would give it one",
                opened.folder,
                missing,
                " and --coverage gives no prediction sets" if coverage else "",
            )
        elif not opened.trust_said:
            log.warning(
                "warning: %s has no trust.npz (exported before calibration existed): its "
                "probabilities are not calibrated, domain_score/in_domain are empty%s; export "
                "it again to get them",
                opened.folder,
                " and --coverage gives no prediction sets" if coverage else "",
            )
        return None
    images = opened.inputs.images
    try:
        return opened.trust.domain_score(Reader(opened.model).features(images, batch), images)
    except (InvalidConfig, ValueError, TypeError, IndexError) as exc:
        log.warning(
            "warning: %s's trust.npz does not fit its model (%s); domain_score/in_domain are "
            "empty and --coverage gives no prediction sets; export it again",
            opened.folder,
            exc,
        )
        return None


def _tta_metrics(
    plain: np.ndarray, pred: np.ndarray, labels: np.ndarray | None, symmetry: str
) -> dict[str, Any]:
    before = plain.argmax(axis=1)
    tta: dict[str, Any] = {
        "views": VIEW_COUNT[symmetry],
        "symmetry": symmetry,
        "changed_predictions": float(np.mean(before != pred)),
    }
    if labels is not None:
        without, with_ = float(np.mean(before == labels)), float(np.mean(pred == labels))
        tta.update(accuracy_without=without, accuracy_with=with_, accuracy_change=with_ - without)
    return tta


def _outputs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The CSV, and the confusion matrix and reliability diagram beside it."""
    out = Path(args.out)
    confusion = (
        Path(args.confusion_out)
        if args.confusion_out
        else out.with_name(out.stem + "_confusion.png")
    )
    return out, confusion, out.with_name(out.stem + "_reliability.png")


@dataclass
class Predicted:
    """The predictions and everything measured on them."""

    probs: np.ndarray
    metrics: dict[str, Any]
    domain: np.ndarray | None
    sets: np.ndarray | None
    table: Any  # the reliability table with labels, else None

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def _predict(opened: Opened, args: argparse.Namespace) -> Predicted:
    from search.reporting.calibration import reliability
    from trainer.trust import abstention

    model, images, labels = opened.model, opened.inputs.images, opened.inputs.labels
    tta = _use_tta(args.tta, opened)
    batch = args.batch_size
    plain = predict_probs(model, images, tta=False, batch=batch)
    views = opened.symmetry
    probs = predict_probs(model, images, tta=True, batch=batch, views=views) if tta else plain
    pred = probs.argmax(axis=1)
    metrics: dict[str, Any] = {"n_images": len(pred)}
    table = None
    if labels is not None:
        metrics.update(score(labels, pred, opened.names))
        table = reliability(probs, labels)
        metrics.update(
            ece=table.ece, reliability=table.as_dict(), abstention=abstention(probs, labels)
        )
    domain = _domain(opened, batch, args.coverage is not None)
    sets = None
    if domain is not None:
        metrics["domain"] = domain_metrics(domain, opened.trust.threshold, pred, labels)
    if opened.trust is not None and (domain is not None or opened.runtime == "onnx"):
        if args.coverage is not None:
            # The sets' scores were calibrated on the model's own output, not on --tta views.
            sets = opened.trust.sets(plain, args.coverage)
            metrics["coverage"] = args.coverage
            held = len(opened.trust.set_scores)
            if math.ceil((held + 1) * args.coverage) > held:  # split conformal's rank
                log.warning(
                    "warning: --coverage %g needs at least %d calibration images, and %s holds "
                    "back %d: every set holds every class; ask for at most %g, or train the "
                    "export on more images",
                    args.coverage,
                    math.ceil(args.coverage / (1 - args.coverage)),
                    opened.folder,
                    held,
                    math.floor(100 * held / (held + 1)) / 100,
                )
            metrics["mean_set_size"] = float(sets.sum(axis=1).mean())
            if labels is not None:
                metrics["set_coverage"] = float(sets[np.arange(len(labels)), labels].mean())
    metrics.update(
        model=str(opened.folder),
        data=opened.data,
        resized=opened.inputs.resized,
        tta_used=tta,
        model_views=opened.views,
        runtime=opened.runtime,
        predicted_counts={n: int(np.sum(pred == i)) for i, n in enumerate(opened.names)},
    )
    if tta:
        metrics["tta"] = _tta_metrics(plain, pred, labels, views)
    if args.corruptions:
        metrics["corruptions"] = robustness(
            model,
            images,
            labels,
            pred,
            tta=tta,
            batch=batch,
            seed=args.corruption_seed,
            views=views,
            colour=opened.colour,
        )
    return Predicted(probs, metrics, domain, sets, table)


def _write(opened: Opened, done: Predicted, args: argparse.Namespace) -> list[Path]:
    """Every output, atomically; raises OSError."""
    from search.atomic import atomic_write_bytes
    from search.reporting.calibration import reliability_png
    from search.reporting.confusion import confusion_png

    out, confusion_out, reliability_out = _outputs(args)
    labels, names, metrics = opened.inputs.labels, opened.names, done.metrics
    threshold = opened.trust.threshold if done.domain is not None else None
    text = predictions_csv(
        opened.inputs.sources, done.probs, names, labels, done.domain, threshold, done.sets
    )
    atomic_write_bytes(out, text.encode())
    written = [out]
    if args.metrics_out:
        atomic_write_bytes(Path(args.metrics_out), (json.dumps(metrics, indent=2) + "\n").encode())
        written.append(Path(args.metrics_out))
    n, name = len(done.probs), opened.folder.name
    if labels is not None:
        title = f"{name}: accuracy {metrics['accuracy']:.3f}, {n} images"
        matrix = np.array(metrics["confusion"]["matrix"])
        atomic_write_bytes(confusion_out, confusion_png(matrix, names, title))
        written.append(confusion_out)
    if done.table is not None:
        title = f"{name}: ECE {done.table.ece:.3f} over {n} images"
        atomic_write_bytes(reliability_out, reliability_png(done.table, title))
        written.append(reliability_out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    from search.cli import UsageError

    try:
        opened = _open(args)
    except UsageError as exc:
        return usage_error(str(exc))
    done = _predict(opened, args)
    try:
        written = _write(opened, done, args)
    except OSError as exc:
        print(f"error: cannot write the outputs ({exc})", file=sys.stderr)
        return EXIT_FAILED
    _say(done.metrics, opened.inputs.labels, done.pred, opened.names, written)
    return EXIT_OK


def _say(
    metrics: dict[str, Any],
    labels: np.ndarray | None,
    pred: np.ndarray,
    names: list[str],
    written: list[Path],
) -> None:
    """The terminal's summary, the trust lines, the out-of-domain warning, the files."""
    print(summary_text(metrics, labels, pred, names))
    for line in trust_text(metrics):
        print(line)
    share = metrics.get("domain", {}).get("share_flagged", 0.0)
    if share > 0.5:
        log.warning(
            "warning: %.0f%% of these images look unlike the images the model trained on "
            "(another microscope, stain, camera or kind of image?): its predictions on them are "
            "not to be trusted",
            100 * share,
        )
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    sys.exit(main())
