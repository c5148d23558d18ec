"""``python -m search.export --study NAME --out DIR``: turn a study's best trial into a model.

Takes the best complete trial (or ``--trial N``) and trains its configuration again, because
cross-validation keeps no weights:

- default: on all the study's images, for round(median(best_epoch + 1)) epochs over its folds
  (``trainer.final.final_epochs``; ``--epochs`` overrides), each epoch at the median learning
  rate the folds used at that epoch (so plateau reductions are replayed);
- ``--ensemble``: one model per fold on that fold's training split, for that fold's own best
  epoch + 1 at that fold's recorded rates, saved as a single Keras model that averages the fold
  models' softmax outputs.

BatchNorm statistics are re-estimated on clean training batches before saving. A model trained
under an augmentation level averages its softmax over the 8 dihedral views of each image
(``trainer.views``; ``--no-tta`` saves the single-view model). The data is the
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
import datetime
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.cli import EXIT_FATAL as EXIT_FAILED
from search.cli import EXIT_OK, setup_logging, usage_error

FILES = ("model.keras", "config.json", "classes.json", "report.md", "history.json")
_STUDY_KEYS = ("data", "data_fingerprint", "image_size", "class_names", "fold_of", "folds")

log = logging.getLogger("search.export")


def build_parser() -> argparse.ArgumentParser:
    from storage import DEFAULT_URL

    p = argparse.ArgumentParser(
        prog="python -m search.export",
        description="Retrain a study's best trial on all its data (or keep one model per fold "
        "with --ensemble) and write a ready-to-use model folder.",
        epilog=f"DIR gets {', '.join(FILES)}. Exit codes: 0 done, 1 training failed, 2 bad "
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
        help="build test-time views into the model: it averages its softmax over the 8 "
        "dihedral views of each image (default: on when the trial trained under an augmentation "
        "level, all of which include those views; 8x the inference cost)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing export in DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    return p


@dataclass(frozen=True)
class Plan:
    """What will be exported and how, settled before any training starts."""

    study: str
    storage: str  # redacted
    trial: int
    value: float
    params: dict[str, Any]
    config: dict[str, Any]
    attrs: dict[str, Any]  # the study's user attrs
    spec: str
    fingerprint: str
    folds: list[Any]  # FoldResult, fold order
    ensemble: bool
    epochs: list[int]  # one entry (all data) or one per fold
    schedules: list[list[float]]
    image_size: int  # the model's input size
    views: str  # test-time views built into the model: trainer.views.VIEWS
    how: str = ""  # how the epochs and rates were chosen, for the report


def _open_study(name: str, url: str):
    import optuna

    from search.study import UsageError
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


def _pick_trial(study: Any, number: int | None):
    from optuna.trial import TrialState

    from search.records import best_complete
    from search.study import UsageError

    complete = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and t.value is not None
    ]
    numbers = ", ".join(str(t.number) for t in complete[:20]) or "none"
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
    if found[0].state != TrialState.COMPLETE:
        raise UsageError(
            f"trial {number} is {found[0].state.name.lower()}, not complete; export a complete trial "
            f"({numbers})"
        )
    return found[0]


def _plan(args: argparse.Namespace):
    """Read the study, pick the trial, load and check the data: everything that can refuse."""
    from search.data import fingerprint, load_dataset
    from search.records import fold_results
    from search.study import UsageError, decode_folds
    from storage import redact
    from trainer.config import TrialConfig
    from trainer.records import Dataset

    study = _open_study(args.study, args.storage)
    attrs = dict(study.user_attrs)
    missing = [k for k in _STUDY_KEYS if k not in attrs]
    if missing:
        raise UsageError(
            f"study {args.study!r} lacks {missing}: it was not made by python -m search.run"
        )
    trial = _pick_trial(study, args.trial)
    if "config" not in trial.user_attrs:
        raise UsageError(f"trial {trial.number} has no stored configuration ('config')")
    config = TrialConfig.from_dict(dict(trial.user_attrs["config"]))
    spec = args.data or str(attrs["data"])
    data: Dataset = load_dataset(spec, image_size=int(attrs["image_size"]))
    found = fingerprint(data)
    if found != attrs["data_fingerprint"]:
        raise UsageError(
            f"--data {spec!r} ({len(data)} images, fingerprint {found[:12]}) is not the data of "
            f"study {args.study!r} ({attrs['data']!r}, {attrs.get('n_images', '?')} images, "
            f"fingerprint {str(attrs['data_fingerprint'])[:12]}); pass the study's data"
        )
    results = fold_results(trial)
    done = [r for r in results if not r.stopped]
    n_folds = int(attrs["folds"])
    if args.ensemble and sorted(r.fold for r in done) != list(range(n_folds)):
        raise UsageError(
            f"--ensemble needs all {n_folds} folds of trial {trial.number}; it finished "
            f"{sorted(r.fold for r in done)}"
        )
    if not done:
        raise UsageError(f"trial {trial.number} has no finished folds to take epochs from")
    from trainer.final import final_epochs, replay_schedule

    if args.ensemble:
        epochs = [args.epochs or r.best_epoch + 1 for r in done]
        schedules = [replay_schedule([r], e) for r, e in zip(done, epochs, strict=True)]
    else:
        epochs = [args.epochs or final_epochs(done)]
        schedules = [replay_schedule(done, epochs[0])]
    plan = Plan(
        study=args.study,
        storage=redact(args.storage),
        trial=trial.number,
        value=float(trial.value),
        params=dict(trial.params),
        config=config.to_dict(),
        attrs=attrs,
        spec=spec,
        fingerprint=found,
        folds=results,
        ensemble=args.ensemble,
        epochs=epochs,
        schedules=schedules,
        image_size=int(attrs["image_size"]),
        views=views_chosen(args.tta, config.augment),
        how=(
            "that fold's best epoch + 1"
            if args.ensemble
            else f"round(median(best epoch + 1)) over folds: {[r.best_epoch + 1 for r in done]}"
        )
        if args.epochs is None
        else f"--epochs {args.epochs}",
    )
    return plan, config, data, decode_folds(str(attrs["fold_of"]))


def views_chosen(tta: bool | None, augment: str) -> str:
    """--tta/--no-tta, or by default the views the augmentation level trained on."""
    from trainer.views import views_for

    if tta is None:
        return views_for(augment)
    return "dihedral" if tta else "none"


def _progress(name: str, epoch: Any, total: int) -> None:
    log.info(
        "[%s] epoch %d/%d (%s, augment %s): train loss %.4f, lr %.3g, %.1fs",
        name,
        epoch.epoch + 1,
        total,
        epoch.phase,
        epoch.augment,
        epoch.train_loss,
        epoch.learning_rate,
        epoch.seconds,
    )


def _config_json(plan: Plan, n_images: int) -> dict[str, Any]:
    attrs = plan.attrs
    return {
        "format": "bloodcell-search export v1",
        "study": plan.study,
        "storage": plan.storage,
        "trial": plan.trial,
        "value": plan.value,
        "metric": attrs.get("metric", "accuracy"),
        "fold_scores": [r.score(attrs.get("metric", "accuracy")) for r in plan.folds],
        "params": plan.params,
        "config": plan.config,
        "data": {"spec": plan.spec, "fingerprint": plan.fingerprint, "n_images": n_images},
        "image_size": plan.image_size,
        "class_names": list(attrs["class_names"]),
        "input": "float32 RGB, values 0..255, N x S x S x 3 (the model rescales itself)",
        "mode": "ensemble" if plan.ensemble else "all_data",
        "tta": plan.views,
        "epochs": plan.epochs if plan.ensemble else plan.epochs[0],
        "learning_rates": plan.schedules if plan.ensemble else plan.schedules[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


_VIEWS_TEXT = {
    "dihedral": "the model averages its softmax over the 8 dihedral views of each image "
    "(rotations by multiples of 90 degrees, plain and mirrored; 8x the inference cost)",
    "none": "none (one view per image)",
}


def _report(plan: Plan, cfg: dict[str, Any], runs: list[Any], seconds: float) -> str:
    metric = cfg["metric"]
    mode = (
        f"ensemble of {len(runs)} fold models (mean of their softmax outputs), each retrained on "
        f"its fold's training split for {plan.epochs} epochs ({plan.how})"
        if plan.ensemble
        else f"retrained on all {cfg['data']['n_images']} images at {plan.image_size} px for "
        f"{plan.epochs[0]} epochs ({plan.how})"
    )
    lines = [
        f"# Export of trial {plan.trial} from study '{plan.study}'",
        "",
        f"- storage: `{plan.storage}`",
        f"- cross-validated {metric}: **{plan.value:.4f}** (mean over folds)",
        f"- model: {mode}",
        f"- test-time views: {_VIEWS_TEXT[plan.views]}",
        f"- data: `{plan.spec}`, {cfg['data']['n_images']} images at {cfg['image_size']} px, "
        f"fingerprint `{plan.fingerprint[:16]}`",
        f"- exported {cfg['date']} in {seconds:.0f} s",
        "",
        "## Configuration",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(plan.config.items())]
    lines += [
        "",
        "## Cross-validation (from the study)",
        "",
        f"| fold | best epoch | {metric} | balanced accuracy | macro F1 | loss |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in plan.folds:
        b = r.best
        lines.append(
            f"| {r.fold} | {r.best_epoch} | {r.score(metric):.4f} | {b.balanced_accuracy:.4f} | "
            f"{b.macro_f1:.4f} | {b.loss:.4f} |"
        )
    scores = [r.score(metric) for r in plan.folds if not r.stopped]
    if len(scores) > 1:
        lines += ["", f"mean {statistics.mean(scores):.4f}, sd {statistics.pstdev(scores):.4f}"]
    lines += ["", "## Training of this export", ""]
    for run in runs:
        lines += [
            f"### {run.name} ({run.n_images} images, {run.seconds:.0f} s)",
            "",
            "| epoch | phase | augment | train loss | learning rate | seconds |",
            "|---:|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {e.epoch} | {e.phase} | {e.augment} | {e.train_loss:.4f} | "
            f"{e.learning_rate:.3g} | {e.seconds:.1f} |"
            for e in run.epochs
        ]
        lines.append("")
    return "\n".join(lines)


def _write(out: Path, model: Any, plan: Plan, n_images: int, runs: list[Any], seconds: float):
    from search.atomic import atomic_write_bytes
    from trainer.final import save_model

    out.mkdir(parents=True, exist_ok=True)
    cfg = _config_json(plan, n_images)
    history = {
        "mode": cfg["mode"],
        "runs": [r.history() for r in runs],
        "cv": {"metric": cfg["metric"], "folds": [r.to_dict() for r in plan.folds]},
    }
    save_model(model, out / "model.keras")
    texts = {
        "classes.json": json.dumps(cfg["class_names"], indent=2),
        "history.json": json.dumps(history, indent=2),
        "report.md": _report(plan, cfg, runs, seconds),
        "config.json": json.dumps(cfg, indent=2),  # last: its presence marks a complete export
    }
    for name, text in texts.items():
        atomic_write_bytes(out / name, (text + "\n").encode())


def export_model(
    plan: Plan,
    config: Any,
    data: Any,
    folds: list[Any],
    out: Path,
    *,
    deadline: Any = None,
    tail: Any = None,
) -> Plan:
    """Train what ``plan`` says, write the export folder and return the plan as trained; raises
    TrialFailed or OSError.

    With a ``trainer.final.Deadline`` (one model on all data) the epochs and their cosine rates
    follow the run's own epoch times, and the folder records the ones it trained; a
    ``trainer.final.Tail`` trains the last epochs under its augmentation level."""
    from trainer.final import ensemble_model, fit_all, fit_folds
    from trainer.views import with_views

    start = time.perf_counter()
    if plan.ensemble:
        runs = fit_folds(
            config, data, folds, plan.epochs, lr_schedules=plan.schedules, progress=_progress
        )
        model = ensemble_model([r.model for r in runs])
    else:
        schedule = None if deadline is not None else plan.schedules[0]
        runs = [
            fit_all(
                config,
                data,
                plan.epochs[0],
                lr_schedule=schedule,
                progress=_progress,
                deadline=deadline,
                tail=tail,
            )
        ]
        model = runs[0].model
        trained = runs[0].epochs
        if deadline is not None:
            plan = dataclasses.replace(
                plan, epochs=[len(trained)], schedules=[[e.learning_rate for e in trained]]
            )
    model = with_views(model, plan.views)
    _write(out, model, plan, len(data), runs, time.perf_counter() - start)
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    for noisy in ("absl", "tensorflow", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        return usage_error(f"--out {args.out} exists and is not a folder")
    if not args.force and any((out / name).exists() for name in FILES):
        return usage_error(f"--out {args.out} already holds an export; pass --force to replace it")
    if args.epochs is not None and args.epochs < 1:
        return usage_error(f"--epochs must be at least 1, got {args.epochs}")
    if args.trial is not None and args.trial < 0:
        return usage_error(f"--trial must be a trial number (>= 0), got {args.trial}")
    from search.data import DataError
    from search.study import UsageError
    from storage import StorageError
    from trainer.errors import TrialFailed

    try:
        plan, config, data, folds = _plan(args)
    except (UsageError, DataError, StorageError, TrialFailed) as exc:
        return usage_error(str(exc))
    what = f"{len(folds)} fold models" if plan.ensemble else f"all {len(data)} images"
    log.info(
        "trial %d (%s %.4f): %s, %s lr=%.3g, augment %s; training on %s for %s epochs",
        plan.trial,
        plan.attrs.get("metric", "accuracy"),
        plan.value,
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
    print(
        f"exported trial {plan.trial} of study {plan.study!r} "
        f"({'ensemble' if plan.ensemble else 'all data'}) -> {out} ({', '.join(FILES)})"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
