"""``python -m search.export --study NAME --out DIR``: turn a study's best trial into a model.

Takes the best complete trial (or ``--trial N``) and trains its configuration again, because
cross-validation keeps no weights:

- default: on all the study's images but a calibration slice (``trainer.trust``), for round(median(best_epoch + 1)) epochs over its folds
  (``trainer.final.final_epochs``; ``--epochs`` overrides), each epoch at the median learning
  rate the folds used at that epoch (so plateau reductions are replayed);
- ``--ensemble``: one model per fold on that fold's training split, for that fold's own best
  epoch + 1 at that fold's recorded rates, saved as a single Keras model that averages the fold
  models' softmax outputs.

BatchNorm statistics are re-estimated on clean training batches before saving. A model trained
under an augmentation level averages its softmax over the views the study's symmetry allows (8
dihedral, the image and its mirror, or none: ``trainer.views``; ``--no-tta`` saves the
single-view model). The data is the
study's ``data`` spec unless ``--data`` is given, and must have the study's fingerprint.

``DIR`` gets ``model.keras`` (input: float32 0..255 RGB at the study's image size; output:
class probabilities; loads with ``keras.models.load_model`` and no custom objects),
``config.json`` (trial, value, parameters, full configuration, study, redacted storage, data
spec and fingerprint, image size, class names, mode, epochs, date), ``classes.json`` (class
names in output order), ``report.md`` and ``history.json`` (per-epoch training loss and the
trial's fold scores). Every file is written atomically. Exit codes: 0 done, 1 training failed
(e.g. out of memory; the reason is printed), 2 bad usage or input (nothing is written).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.cli import EXIT_FATAL as EXIT_FAILED
from search.cli import EXIT_OK, Parser, setup_logging, usage_error
from search.engine.model_folder import FILES, TRUST_FILES, ExportPlan, export_model, views_chosen

_STUDY_KEYS = ("data", "data_fingerprint", "image_size", "class_names", "fold_of", "folds")

log = logging.getLogger("search.export")


def build_parser() -> argparse.ArgumentParser:
    from storage import DEFAULT_URL

    p = Parser(
        prog="python -m search.export",
        description="Retrain a study's best trial on its data (or keep one model per fold "
        "with --ensemble), calibrate it on a held-back slice and write a ready-to-use model "
        "folder.",
        epilog=f"DIR gets {', '.join(FILES)}, and {' and '.join(TRUST_FILES)} when a "
        "calibration slice was held back (10% of the images, at most 300, when that is at least "
        "20): the model's probabilities are calibrated on it and search.predict flags images "
        "unlike the training data. Exit codes: 0 done, 1 training failed, 2 bad "
        "usage or input.",
    )
    p.add_argument("--study", required=True, metavar="NAME", help="the study's name in storage")
    p.add_argument("--storage", default=DEFAULT_URL, metavar="URL", help=f"default {DEFAULT_URL}")
    p.add_argument(
        "--data",
        default=None,
        metavar="SPEC",
        help="the study's data (default: the spec it was made with); must match its fingerprint",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the model into")
    p.add_argument(
        "--trial", type=int, default=None, metavar="N", help="export trial N (default: the best)"
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        metavar="MS",
        help="in a study with --objective accuracy,latency: export the most accurate trial of "
        "the Pareto front whose measured latency is at most MS (search.report lists the front)",
    )
    p.add_argument(
        "--max-params",
        type=int,
        default=None,
        metavar="N",
        help="in a study with --objective accuracy,params: the most accurate trial with at most "
        "N parameters",
    )
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="retrain one model per cross-validation fold and average them",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="E",
        help="train E epochs (default: round(median(best epoch + 1)) over the folds; with "
        "--ensemble each fold's own best epoch + 1)",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build test-time views into the model: it averages its softmax over the views "
        "the study's symmetry allows (8 dihedral, the image and its mirror, or none where turns "
        "change the label; that many times the inference cost). Default: on when the trial "
        "trained under an augmentation level",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=("tensorflow", "jax", "torch"),
        help="the Keras backend to train on (default: KERAS_BACKEND if set, else the one the "
        "trial ran on); the saved model.keras loads on every backend",
    )
    p.add_argument(
        "--format",
        default="keras",
        metavar="LIST",
        help="files to write, comma-separated: keras (model.keras, always), onnx (model.onnx, "
        "for ONNX Runtime: search.predict --runtime onnx needs no TensorFlow, JAX or PyTorch), "
        "litert (model.tflite), savedmodel (saved_model/), onnx-int8 and litert-int8 (8-bit "
        "weights: model.int8.onnx, model.int8.tflite; config.json's cost.held_out scores each "
        "file on the held-out calibration slice); the test-time views are inside every file. "
        "onnx needs pip install 'bloodcell-search[export]'; all but keras are written from "
        "the TensorFlow backend",
    )
    p.add_argument("--force", action="store_true", help="replace an existing export in DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    return p


def _open_study(name: str, url: str):
    import optuna

    from search.cli import UsageError
    from storage import find_storage, redact, storage_errors

    storage = find_storage(url, heartbeat_interval=None, grace_period=None)
    if storage is None:  # nothing there: creating a database here would hide the typo
        raise UsageError(f"no study database at --storage {redact(url)}; check the URL")
    with storage_errors(url):
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            names = optuna.study.get_all_study_names(storage)
            raise UsageError(
                f"no study {name!r} in {redact(url)}; studies there: {', '.join(names) or 'none'}"
            ) from None


def _limit(study: Any, max_latency_ms: float | None, max_params: int | None) -> float | None:
    """The cost limit asked for, checked against the study's cost objective."""
    from search.cli import UsageError
    from storage.records import LIMIT_FLAGS, cost_name, unmeasured_limit

    cost = cost_name(study)
    limits: dict[str, float | None] = {"latency": max_latency_ms, "params": max_params}
    name = unmeasured_limit(cost, limits)
    if name is not None:
        raise UsageError(
            f"{LIMIT_FLAGS[name]}: study {study.study_name!r} does not measure {name} (its "
            f"objective: {study.user_attrs.get('objective', 'accuracy')}); run a study with "
            f"--objective accuracy,{name}, or pass --trial N"
        )
    limit = limits[cost] if cost else None
    return None if limit is None else float(limit)


def _pick_trial(study: Any, number: int | None, max_cost: float | None = None):
    from optuna.trial import TrialState

    from search.cli import UsageError
    from storage.records import LIMIT_FLAGS, best_complete, cost_name, fold_results, score

    complete = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and score(t) is not None
    ]
    numbers = ", ".join(str(t.number) for t in complete[:20]) or "none"
    if number is None and max_cost is not None:
        best = best_complete(study, max_cost=max_cost)
        if best is None:
            flag = LIMIT_FLAGS[str(cost_name(study))]
            raise UsageError(
                f"no complete trial of study {study.study_name!r} is within {flag} {max_cost:g}; "
                "python -m search.report lists its Pareto front"
            )
        return best
    if number is None:
        best = best_complete(study)
        if best is None:
            raise UsageError(f"study {study.study_name!r} has no complete trial to export yet")
        return best
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise UsageError(
            f"study {study.study_name!r} has no trial {number}; complete trials: {numbers}"
        )
    if found[0].state == TrialState.PRUNED and any(not r.stopped for r in fold_results(found[0])):
        # A --budget run's final model may be a pruned trial's: its finished folds give the
        # epochs, as they do there, so the command a failed final model names works.
        log.warning(
            "trial %d was pruned; exporting it from its finished folds' learning curves", number
        )
        return found[0]
    if found[0].state != TrialState.COMPLETE:
        raise UsageError(
            f"trial {number} is {found[0].state.name.lower()}, not complete; export a complete trial "
            f"({numbers})"
        )
    return found[0]


def _use_backend(asked: str | None, trained_on: str) -> str:
    """Choose the backend (``--backend``, else ``KERAS_BACKEND``, else the trial's) and set it
    for Keras, which this process has not imported yet."""
    from search.cli import UsageError
    from search.engine.devices import DeviceError, check_backend

    name = asked or os.environ.get("KERAS_BACKEND", "").strip() or trained_on
    try:
        check_backend(name)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != name:
        raise UsageError(f"Keras is already running on another backend than {name} here")
    os.environ["KERAS_BACKEND"] = name
    return name


def _how(args: argparse.Namespace, done: list[Any]) -> str:
    """How the epochs were chosen, for the report."""
    if args.epochs is not None:
        return f"--epochs {args.epochs}"
    if args.ensemble:
        return "that fold's best epoch + 1"
    return f"round(median(best epoch + 1)) over folds: {[r.best_epoch + 1 for r in done]}"


def _epochs(
    args: argparse.Namespace, number: int, done: list[Any], n_folds: int
) -> tuple[list[int], list[list[float]]]:
    """Epochs and learning rates of each model to train (one, or one per fold with
    --ensemble), from the trial's finished folds; UsageError when they cannot be had."""
    from search.cli import UsageError
    from trainer.final import final_epochs, replay_schedule

    if args.ensemble and sorted(r.fold for r in done) != list(range(n_folds)):
        raise UsageError(
            f"--ensemble needs all {n_folds} folds of trial {number}; it finished "
            f"{sorted(r.fold for r in done)}"
        )
    if not done:
        raise UsageError(f"trial {number} has no finished folds to take epochs from")
    if args.ensemble:
        epochs = [args.epochs or r.best_epoch + 1 for r in done]
        return epochs, [replay_schedule([r], e) for r, e in zip(done, epochs, strict=True)]
    epochs = [args.epochs or final_epochs(done)]
    return epochs, [replay_schedule(done, epochs[0])]


def _plan(args: argparse.Namespace):
    """Read the study, pick the trial, load and check the data: everything that can refuse."""
    from search.cli import UsageError
    from search.data import fingerprint, load_dataset
    from storage.records import fold_results
    from storage.study import decode_folds
    from trainer.config import TrialConfig
    from trainer.records import Dataset

    study = _open_study(args.study, args.storage)
    attrs = dict(study.user_attrs)
    missing = [k for k in _STUDY_KEYS if k not in attrs]
    if missing:
        raise UsageError(
            f"study {args.study!r} lacks {missing}: it was not made by python -m search.run"
        )
    trial = _pick_trial(study, args.trial, _limit(study, args.max_latency_ms, args.max_params))
    if "config" not in trial.user_attrs:
        raise UsageError(f"trial {trial.number} has no stored configuration ('config')")
    config = TrialConfig.from_dict(dict(trial.user_attrs["config"]))
    config = dataclasses.replace(config, backend=_use_backend(args.backend, config.backend))
    formats = _formats(args.format)
    spec = args.data or str(attrs["data"])
    data: Dataset = load_dataset(spec, image_size=int(attrs["image_size"]))
    found = fingerprint(data)
    if found != attrs["data_fingerprint"]:
        raise UsageError(
            f"--data {spec!r} ({len(data)} images, fingerprint {found[:12]}) is not the data of "
            f"study {args.study!r} ({attrs['data']!r}, {attrs.get('n_images', '?')} images, "
            f"fingerprint {str(attrs['data_fingerprint'])[:12]}); pass the study's data"
        )
    done = [r for r in fold_results(trial) if not r.stopped]
    epochs, schedules = _epochs(args, trial.number, done, int(attrs["folds"]))
    plan = ExportPlan.from_trial(
        trial,
        storage=args.storage,
        attrs=attrs,
        study=args.study,
        config=config.to_dict(),
        spec=spec,
        fingerprint=found,
        ensemble=args.ensemble,
        epochs=epochs,
        schedules=schedules,
        image_size=int(attrs["image_size"]),
        views=views_chosen(args.tta, config.augment, config.symmetry),
        how=_how(args, done),
        formats=formats,
    )
    return plan, config, data, decode_folds(str(attrs["fold_of"]))


def _formats(text: str) -> tuple[str, ...]:
    """--format's files, checked against this backend and installation before any training."""
    from search.cli import UsageError
    from trainer.errors import InvalidConfig
    from trainer.portable import check_formats, parse_formats

    try:
        formats = parse_formats(text)
        check_formats(formats)
    except InvalidConfig as exc:
        raise UsageError(str(exc)) from None
    return formats


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        return usage_error(f"--out {args.out} exists and is not a folder")
    if not args.force and any((out / name).exists() for name in FILES):
        return usage_error(f"--out {args.out} already holds an export; pass --force to replace it")
    if args.epochs is not None and args.epochs < 1:
        return usage_error(f"--epochs must be at least 1, got {args.epochs}")
    if args.trial is not None and args.trial < 0:
        return usage_error(f"--trial must be a trial number (>= 0), got {args.trial}")
    limits = [f for f in ("max_latency_ms", "max_params") if getattr(args, f) is not None]
    if args.trial is not None and limits or len(limits) > 1:
        return usage_error(
            "pass one of --trial, --max-latency-ms and --max-params: each picks the trial"
        )
    for flag in limits:
        if not getattr(args, flag) > 0:
            return usage_error(f"--{flag.replace('_', '-')} must be positive")
    from search.cli import UsageError
    from search.data import DataError
    from storage import StorageError
    from trainer.errors import TrialFailed

    try:
        plan, config, data, folds = _plan(args)
    except (UsageError, DataError, StorageError, TrialFailed) as exc:
        return usage_error(str(exc))
    what = (
        f"{len(folds)} fold models" if plan.ensemble else f"the {len(data)} images"
    ) + " (less the calibration slice, if they allow one)"
    log.info(
        "trial %d (%s %.4f): %s, %s lr=%.3g, augment %s; training on %s for %s epochs",
        plan.trial,
        plan.metric,
        plan.cv_score(),
        config.backbone,
        config.optimizer,
        config.learning_rate,
        config.augment,
        what,
        plan.epochs if plan.ensemble else plan.epochs[0],
    )
    try:
        export_model(plan, config, data, folds, out)
    except TrialFailed as exc:
        print(f"error: training failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: cannot write the export to {out} ({exc})", file=sys.stderr)
        return EXIT_FAILED
    formats = json.loads((out / "config.json").read_text()).get("formats", {})
    names = dict.fromkeys([*FILES, *formats.values(), *TRUST_FILES])  # every file, listed once
    print(
        f"exported trial {plan.trial} of study {plan.study!r} "
        f"({'ensemble' if plan.ensemble else 'all data'}) -> {out} "
        f"({', '.join(n for n in names if (out / n).exists())})"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
