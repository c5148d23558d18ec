"""The model folder: train what an ``ExportPlan`` says and write the folder ``search.export`` and a
``--budget`` run hand over (``FILES``: the model, its configuration, class names, a report and
the training history), every file atomically and ``config.json`` last."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage.records import score

FILES = ("model.keras", "config.json", "classes.json", "report.md", "history.json")
# Written when the data leaves a calibration slice (trainer.trust.calibration_slice).
TRUST_FILES = ("trust.npz", "reliability.png")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportPlan:
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
    recipe: dict[str, Any] | None = None  # a --budget final model's recipe and its evidence
    formats: tuple[str, ...] = ("keras",)  # trainer.portable.FORMATS, keras first

    @classmethod
    def from_trial(
        cls, trial: Any, *, storage: str, attrs: dict[str, Any], **rest: Any
    ) -> ExportPlan:
        """The plan for exporting ``trial`` (an Optuna FrozenTrial): its number, parameters,
        folds and value (a complete trial's; else the mean of its finished folds, since a pruned
        trial's value is one epoch of one fold) come from the trial, ``storage`` is redacted,
        and ``rest`` gives every other field."""
        from optuna.trial import TrialState

        from storage import redact
        from storage.records import fold_results

        folds = fold_results(trial)
        metric = str(attrs.get("metric", "accuracy"))
        finished = [r.score(metric) for r in folds if not r.stopped]
        scored = score(trial)
        if trial.state == TrialState.COMPLETE and scored is not None:
            value = scored
        else:
            value = statistics.mean(finished) if finished else float(scored or 0.0)
        return cls(
            trial=trial.number,
            value=value,
            params=dict(trial.params),
            folds=folds,
            storage=redact(storage),
            attrs=attrs,
            **rest,
        )

    @property
    def metric(self) -> str:
        return str(self.attrs.get("metric", "accuracy"))

    def finished(self) -> list[Any]:
        """The folds the trial finished (a STOP decision ended none of them)."""
        return [r for r in self.folds if not r.stopped]

    def cv_score(self) -> float:
        """The cross-validated score the export states: the mean over the finished folds of each
        fold's best epoch, from the rows of the report's fold table. Not the trial's ``value``:
        a pruned trial's is the last score it reported, one epoch of one fold."""
        scores = [r.score(self.metric) for r in self.finished()]
        return statistics.mean(scores) if scores else self.value


def views_chosen(tta: bool | None, augment: str, symmetry: str = "dihedral") -> str:
    """--tta/--no-tta, or by default the views the augmentation level trained on; never more
    than the study's symmetry allows (``--tta`` under ``none`` is one view)."""
    from search.policy.final import views_for

    return views_for(augment, symmetry, tta)


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


def _config_json(
    plan: ExportPlan, n_images: int, trust: dict[str, Any] | None = None
) -> dict[str, Any]:
    attrs = plan.attrs
    return {
        "format": "bloodcell-search export v1",
        "study": plan.study,
        "storage": plan.storage,
        "trial": plan.trial,
        "value": plan.cv_score(),
        "metric": plan.metric,
        "fold_scores": [r.score(plan.metric) for r in plan.finished()],
        "params": plan.params,
        "config": plan.config,
        "data": {"spec": plan.spec, "fingerprint": plan.fingerprint, "n_images": n_images},
        "image_size": plan.image_size,
        "class_names": list(attrs["class_names"]),
        "input": "float32 RGB, values 0..255, N x S x S x 3 (the model rescales itself)",
        "mode": "ensemble" if plan.ensemble else "all_data",
        "tta": plan.views,
        "symmetry": plan.config.get("symmetry", "dihedral"),
        "colour": plan.config.get("colour", "shift"),
        "symmetry_reason": attrs.get("symmetry_reason", ""),
        "colour_reason": attrs.get("colour_reason", ""),
        "recipe": plan.recipe,
        "trust": trust,
        "epochs": plan.epochs if plan.ensemble else plan.epochs[0],
        "learning_rates": plan.schedules if plan.ensemble else plan.schedules[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


_VIEWS_TEXT = {
    "dihedral": "the model averages its softmax over the 8 dihedral views of each image "
    "(rotations by multiples of 90 degrees, plain and mirrored; 8x the inference cost)",
    "mirror": "the model averages its softmax over each image and its left-right mirror "
    "(2x the inference cost)",
    "none": "none (one view per image)",
}


def _cv_basis(plan: ExportPlan) -> str:
    """What the export's cross-validated score is a mean of, in words."""
    n = len(plan.finished())
    if not n:
        return "the trial's value (it finished no fold)"
    folds = "the 1 finished fold" if n == 1 else f"the {n} finished folds"
    return f"the mean over {folds} of each fold's best epoch (the table below)"


def _trained_on(n: int, cfg: dict[str, Any]) -> str:
    """How many of the images trained the model (``n``: 0 when unknown)."""
    total = int(cfg["data"]["n_images"])
    if not n or n >= total:
        return f"all {total} images"
    return f"{n} of the {total} images (the other {total - n} calibrate it)"


def _training_lines(runs: list[Any]) -> list[str]:
    """report.md's table of each trained model's epochs."""
    lines: list[str] = []
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
    return lines


def _report(plan: ExportPlan, cfg: dict[str, Any], runs: list[Any], seconds: float) -> str:
    metric = cfg["metric"]
    mode = (
        f"ensemble of {len(runs)} fold models (mean of their softmax outputs), each retrained on "
        f"its fold's training split for {plan.epochs} epochs ({plan.how})"
        if plan.ensemble
        else f"retrained on {_trained_on(runs[0].n_images if runs else 0, cfg)} at {plan.image_size} px for "
        f"{plan.epochs[0]} epochs ({plan.how})"
    )
    lines = [
        f"# Export of trial {plan.trial} from study '{plan.study}'",
        "",
        f"- storage: `{plan.storage}`",
        f"- cross-validated {metric}: **{plan.cv_score():.4f}**, {_cv_basis(plan)}",
        f"- model: {mode}",
        f"- test-time views: {_VIEWS_TEXT[plan.views]}",
        f"- symmetry: {cfg['symmetry']} ({cfg['symmetry_reason'] or 'as the study was made'})",
        f"- colour: {cfg['colour']} ({cfg['colour_reason'] or 'as the study was made'})",
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
        fold = f"{r.fold} (stopped, not in the mean)" if r.stopped else str(r.fold)
        lines.append(
            f"| {fold} | {r.best_epoch} | {r.score(metric):.4f} | {b.balanced_accuracy:.4f} | "
            f"{b.macro_f1:.4f} | {b.loss:.4f} |"
        )
    scores = [r.score(metric) for r in plan.finished()]
    if len(scores) > 1:
        lines += [
            "",
            f"mean over the {len(scores)} finished folds {statistics.mean(scores):.4f}, "
            f"sd {statistics.pstdev(scores):.4f}",
        ]
    lines += ["", "## Training of this export", ""] + _training_lines(runs)
    return "\n".join(lines)


def _write(
    out: Path,
    models: tuple[Any, Any],
    plan: ExportPlan,
    n_images: int,
    runs: list[Any],
    seconds: float,
    checked: Any,
    held: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """The folder: ``models`` is the exported model and the same without its views; ``held``
    the calibration slice (images as the model takes them, labels), scored in every format."""
    from search.atomic import atomic_write_bytes
    from search.reporting.calibration import Reliability, reliability_png
    from search.reporting.trust import trust_lines
    from trainer import portable
    from trainer.final import save_model

    model, base = models
    out.mkdir(parents=True, exist_ok=True)
    record, summary = checked
    cfg = _config_json(plan, n_images, summary)
    history = {
        "mode": cfg["mode"],
        "runs": [r.history() for r in runs],
        "cv": {"metric": cfg["metric"], "folds": [r.to_dict() for r in plan.folds]},
    }
    # config.json marks a complete export: gone until the new one is whole, as are the trust
    # files of an earlier export, which must not outlive it.
    for name in ("config.json", *TRUST_FILES, *(portable.FILES[f] for f in portable.FORMATS[1:])):
        portable.remove(out / name)
    save_model(model, out / "model.keras")
    written = portable.write_formats(model, out, plan.formats)
    cfg["formats"] = {"keras": "model.keras", **{f: p.name for f, p in written.items()}}
    cfg["cost"] = portable.measure_cost(model, base, out, written, held=held)
    if record is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **record.arrays())
        atomic_write_bytes(out / "trust.npz", buffer.getvalue())
        table = Reliability.from_dict(summary["reliability"])
        title = f"calibration slice: ECE {summary['ece_after']:.3f} (cross-fitted)"
        atomic_write_bytes(out / "reliability.png", reliability_png(table, title))
    texts = {
        "classes.json": json.dumps(cfg["class_names"], indent=2),
        "history.json": json.dumps(history, indent=2),
        "report.md": _report(plan, cfg, runs, seconds)
        + "\n"
        + "\n".join(trust_lines(summary))
        + "\n"
        + "\n".join(cost_lines(cfg)),
        "config.json": json.dumps(cfg, indent=2),  # last: its presence marks a complete export
    }
    for name, text in texts.items():
        atomic_write_bytes(out / name, (text + "\n").encode())


def export_model(
    plan: ExportPlan,
    config: Any,
    data: Any,
    folds: list[Any],
    out: Path,
    *,
    deadline: Any = None,
    tail: Any = None,
    progressive: Any = None,
) -> ExportPlan:
    """Train what ``plan`` says, write the export folder and return the plan as trained; raises
    TrialFailed or OSError.

    With a ``trainer.final.Deadline`` (one model on all data) the epochs and their cosine rates
    follow the run's own epoch times, and the folder records the ones it trained; a
    ``trainer.final.Tail`` trains the last epochs under its augmentation level and a
    ``trainer.final.Progressive`` the first ones at a smaller size."""
    from trainer.final import ensemble_model, fit_all, fit_folds
    from trainer.records import Fold
    from trainer.views import with_views

    start = time.perf_counter()
    held, train_index = _hold_back(data, config.seed)
    if plan.ensemble:
        kept = [Fold(np.setdiff1d(f.train, held), f.val) for f in folds]
        runs = fit_folds(
            config, data, kept, plan.epochs, lr_schedules=plan.schedules, progress=_progress
        )
        model = ensemble_model([r.model for r in runs])
    else:
        run = fit_all(
            config,
            data,
            plan.epochs[0],
            lr_schedule=None if deadline is not None else plan.schedules[0],
            progress=_progress,
            deadline=deadline,
            tail=tail,
            progressive=progressive,
            index=train_index,
        )
        runs, model = [run], run.model
        if deadline is not None:  # the folder states the epochs the deadline let it train
            plan = dataclasses.replace(
                plan,
                epochs=[len(run.epochs)],
                schedules=[[e.learning_rate for e in run.epochs]],
                config={**plan.config, "epochs": len(run.epochs)},
            )
    base, model = model, with_views(model, plan.views)
    checked = _calibrate(model, plan.views, data, train_index, held, config.seed)
    seconds = time.perf_counter() - start
    _write(out, (model, base), plan, len(data), runs, seconds, checked, _held_out(data, held, plan))
    return plan


def cost_lines(cfg: dict[str, Any]) -> list[str]:
    """report.md's Cost section: files, parameters and latency (config.json's ``cost``)."""
    cost = cfg.get("cost")
    if not cost:
        return []
    views = cfg.get("tta", "none")
    lines = [
        "",
        "## Cost",
        "",
        f"{cost['params']:,} parameters. Latency: {cost['measured_on']}.",
        "",
        "| file | bytes |",
        "| --- | ---: |",
        *(f"| {name} | {size:,} |" for name, size in cost["files_bytes"].items()),
        "",
        "| run | one image, ms | batch of 8, ms | per image in the batch, ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    rows = dict(cost["latency_ms"])
    if isinstance(cost.get("latency_ms_without_views"), dict):
        rows["keras, without the views"] = cost["latency_ms_without_views"]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['single_image_ms']:.2f} | {row['batch8_ms']:.2f} | "
            f"{row['per_image_in_batch_ms']:.2f} |"
        )
    if cost.get("held_out"):
        lines += [
            "",
            "On the calibration slice (held out from training): accuracy, and the share of "
            "classes equal to model.keras'.",
            "",
            "| file | accuracy | same class as keras |",
            "| --- | ---: | ---: |",
            *(
                f"| {name} | {row['accuracy']:.4f} | {row['same_class_as_keras']:.4f} |"
                for name, row in cost["held_out"].items()
            ),
        ]
    lines += [
        "",
        f"Test-time views ({views}) are layers of the model, so every file here holds them: "
        "feed float32 N x S x S x 3 images with values 0-255 (resized as config.json's "
        "`image_size`) and read the averaged probabilities."
        if views != "none"
        else "The model has no test-time views: one forward pass per image.",
    ]
    return lines


def _held_out(data: Any, held: np.ndarray, plan: ExportPlan) -> tuple[np.ndarray, np.ndarray]:
    """The calibration slice as the model takes it (float32 at its size) and its labels."""
    from search.data.images import resize_all

    images = data.images[held]
    if len(images):  # resize_all returns images already at the size as they are
        images = resize_all(images, plan.image_size)
    return images.astype(np.float32), data.labels[held]


def _hold_back(data: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The calibration slice and the images the model trains on."""
    from trainer.trust import calibration_slice

    held = calibration_slice(data.labels, seed)
    if len(held):
        log.info(
            "holding back %d of %d images (stratified) to calibrate the model and its "
            "in-domain flag: its weights never train on them",
            len(held),
            len(data),
        )
    return held, np.setdiff1d(np.arange(len(data)), held)


def _calibrate(
    model: Any, views: str, data: Any, train_index: np.ndarray, held: np.ndarray, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Calibrate ``model`` on the held-back slice and fit its in-domain flag (the temperature
    is baked into ``model``); the record is None, with the reason, when nothing was held back."""
    from trainer import calibrate

    if not len(held):
        from trainer.trust import CALIBRATION_MIN, CALIBRATION_SHARE

        return None, {
            "missing": f"not calibrated: {CALIBRATION_SHARE:.0%} of {len(data)} images is under "
            f"the {CALIBRATION_MIN} a calibration slice needs, so every image trained the model"
        }
    started = time.perf_counter()
    record, summary = calibrate.fit(
        model, views, data.images, data.labels, train_index, held, seed=seed
    )
    log.info(
        "calibrated on %d held-back images in %.0f s: temperature %.2f, ECE %.3f -> %.3f; "
        "in-domain threshold %.2f keeps %.1f%% of them",
        len(held),
        time.perf_counter() - started,
        summary["temperature"],
        summary["ece_before"],
        summary["ece_after"],
        summary["domain"]["threshold"],
        100 * summary["domain"]["retained"],
    )
    return record, summary
