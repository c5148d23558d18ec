"""The model a user gets in a wall-clock budget, scored on real images no system ever saw.

Holds out a stratified quarter of the real blood-cell images (``--holdout-seed``, default 0),
gives each system the same budget on the rest and scores each one's final model on that quarter,
clean and under ``trainer/corruptions.py``'s corruptions: every image under each of the six
(their mean accuracy) and every image under two different ones composed ("pairs").

``--dataset digits`` (or ``mnist5k``; ``bench/datasets.py``) does the same on real images of
another kind, handwritten digits, where a flip or a quarter turn changes the label: the same
quarter convention, rows scored clean only (accuracy and macro F1), and for ours also the
search's own best cross-validation score, to compare the exported model with what its search
promised. Each data set has its own section of the page; rows carry their ``dataset``.

Systems (``--systems``, comma-separated; rows are merged into ``docs/end_to_end.json``, one per
system and split, and the page ``docs/end_to_end.md`` is rewritten from it, each row saying when
it ran; the goal is judged on the quarter of seed 0, where every system ran):

- ``ours``: the README's command, ``python -m search.run --study quick --data TRAIN --budget B``;
- ``kerastuner``: KerasTuner 1.4 Hyperband as its documentation teaches, verbatim
  (``bench/peers.py``);
- ``kerastuner_best``: the same at its best: a BatchNorm momentum that works on small data and
  the final model trained on all the images for the best epoch count (``bench/peers.py``);
- ``autokeras``: AutoKeras 3 ``ImageClassifier`` with its defaults (``bench/peers.py``, which
  names the one workaround it needs);
- ``hand``: one hand-configured run, no search: the small CNN from scratch, flips and 90-degree
  rotations, AdamW with a cosine decay from 2e-3, 15 epochs at 96 px (``trainer.final.fit_all``);
  on another data set at its own size, and without flips or turns where the trainer can be told
  (the ``symmetry`` field of ``TrialConfig``): a user knows that digits have an up;
- ``hand_robust``: the same with the ``robust`` augmentation level (for choosing, with ``--dev``);
- ``hand_best``: the hand recipe at its best within the budget, as a user copying the README
  would run it: ``robust``, its epochs filling the budget (``trainer.final.Deadline`` re-plans the
  cosine decay from the run's own epoch times; a user would guess the count), the data's
  test-time views (dihedral on cells, none on digits), no search;
- ``svc``: scikit-learn's RBF SVC on standardised pixels, C and gamma chosen by 3-fold CV on the
  training images (``bench/baselines.py``), timed; it has no budget.

``--dev`` never touches the held-out quarter: it holds out a further stratified third of the
other images as its test set and trains on the remaining half; constants are chosen there, and
``docs/end_to_end.md`` marks such rows ``dev``.

    python bench/end_to_end.py --systems ours,hand [--budget 30m] [--dev]
    python bench/end_to_end.py --dataset digits --systems ours,svc,hand --budget 10m

``--no-doc`` prints the rows and writes nothing (for smoke runs); ``--ours-args`` appends flags
to ours' command (they are part of the row's command).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from common import ROOT, machine, save_npz, stratified_split  # noqa: I001
from end_to_end_page import BLOOD, RESULTS, SYSTEMS, held_out, row_key, write_page

from search.policy.budget import parse_duration
from trainer.records import Dataset


def load_split(dev: bool, seed: int, dataset: str = BLOOD) -> tuple[Dataset, Dataset, str]:
    data = datasets.load(dataset)
    rest, held = stratified_split(data.labels, 0.25, seed)
    if not dev:
        return data.subset(rest), data.subset(held), held_out(seed)
    inner_rest, inner_held = stratified_split(data.labels[rest], 1 / 3, seed + 1)
    return (
        data.subset(rest[inner_rest]),
        data.subset(rest[inner_held]),
        f"dev: a third of the non-held-out images (seed {seed + 1}); the quarter untouched",
    )


def predicted(model, images: np.ndarray) -> np.ndarray:
    """The class ``model`` predicts for each image (0..255, any dtype). Images of another size
    than a Keras model's input are resized as ``search.predict`` resizes them (Lanczos)."""
    size = (getattr(model, "input_shape", None) or (None, None))[1]
    if size is not None and images.shape[1:3] != (size, size):
        from search.data.images import resize_all

        images = resize_all(np.clip(np.rint(images), 0, 255).astype(np.uint8), int(size))
    return np.argmax(model.predict(images.astype(np.float32), batch_size=128, verbose=0), 1)


def score(model, test: Dataset, seed: int = 0) -> dict[str, float]:
    """Clean accuracy, macro F1, the mean over the six corruptions and over composed pairs."""
    from sklearn.metrics import f1_score

    from trainer.corruptions import CORRUPTIONS, corrupt

    def predict(images: np.ndarray) -> np.ndarray:
        return predicted(model, images)

    clean = predict(test.images)
    out = {
        "clean": float(np.mean(clean == test.labels)),
        "macro_f1": float(f1_score(test.labels, clean, average="macro")),
    }
    names = list(CORRUPTIONS)
    per = {
        name: float(np.mean(predict(corrupt(test.images, name, seed)) == test.labels))
        for name in names
    }
    out["corrupted"] = float(np.mean(list(per.values())))
    rng = np.random.default_rng(seed + 99)
    pairs = np.empty_like(test.images)
    first = rng.integers(len(names), size=len(test))
    second = (first + 1 + rng.integers(len(names) - 1, size=len(test))) % len(names)
    for a in range(len(names)):
        for b in range(len(names)):
            chosen = np.flatnonzero((first == a) & (second == b))
            if chosen.size:
                once = corrupt(test.images[chosen], names[a], seed + 1)
                pairs[chosen] = corrupt(once, names[b], seed + 2)
    out["pairs"] = float(np.mean(predict(pairs) == test.labels))
    out.update({f"corrupted_{k}": v for k, v in per.items()})
    return out


def score_clean(model, test: Dataset) -> dict[str, float]:
    """Accuracy and macro F1 on the clean images (the other data sets' rows)."""
    from sklearn.metrics import f1_score

    clean = predicted(model, test.images)
    return {
        "clean": float(np.mean(clean == test.labels)),
        "macro_f1": float(f1_score(test.labels, clean, average="macro")),
    }


def run_ours(
    train: Dataset, budget: str, work: Path, extra: tuple[str, ...] = ()
) -> tuple[object, dict]:
    import keras

    data = save_npz(train, work / "train.npz")
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--study",
        "quick",
        "--data",
        str(data),
        "--budget",
        budget,
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    (work / "ours.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"search.run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    model = keras.models.load_model(work / "models" / "quick" / "model.keras")
    return model, {
        "command": " ".join(["python", "-m", *command[2:]]),
        "model": described(work / "models" / "quick"),
        **search_summary(work / "studies.db", "quick", work / "models" / "quick"),
    }


def search_summary(db: Path, study: str, folder: Path) -> dict:
    """What the search itself promised: its best complete trial's CV score (the study's own
    choice of best, ``storage.records.best_complete``), the exported trial's, and the counts."""
    import optuna
    from optuna.trial import TrialState

    from storage.records import best_complete

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = optuna.load_study(study_name=study, storage=f"sqlite:///{db}")
    best = best_complete(loaded)
    states = [t.state for t in loaded.get_trials(deepcopy=False)]
    config = json.loads((folder / "config.json").read_text())
    return {
        "search_cv": float(best.value) if best is not None and best.value is not None else None,
        "search_best_trial": best.number if best is not None else None,
        "exported_trial": config["trial"],
        "exported_cv": config["value"],
        "cv_metric": config.get("metric", "accuracy"),
        "symmetry": config.get("symmetry"),
        "colour": config.get("colour"),
        "recipe": config.get("recipe"),
        "trials": {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
        },
    }


def described(folder: Path) -> str:
    """What a --budget model folder holds: the trial, its epochs by size, a full-size epoch's
    seconds (how fast the machine was: the budget buys epochs at that rate)."""
    config = json.loads((folder / "config.json").read_text())
    epochs = json.loads((folder / "history.json").read_text())["runs"][0]["epochs"]
    size = config["image_size"]
    small = [e for e in epochs if e.get("size", size) != size]
    full = [e["seconds"] for e in epochs if e.get("size", size) == size][1:]
    what = (
        f"trial {config['trial']}: {config['config']['backbone']}, augment "
        f"{config['config']['augment']}, {config['config']['optimizer']}, "
        f"{config['epochs']} epochs at {size} px"
    )
    if small:
        what += f" (the first {len(small)} at {small[0]['size']} px)"
    if full:
        what += f"; a {size} px epoch {float(np.median(full)):.0f} s"
    return what


def run_hand(
    train: Dataset, augment: str, symmetry: str = "", seconds: float | None = None
) -> tuple[object, dict]:
    """The hand recipe; ``symmetry`` (e.g. ``none``) where the trainer's config has the field;
    with ``seconds``, its epochs fill them and the model predicts through its test-time views."""
    from trainer.config import TrialConfig
    from trainer.final import Deadline, cosine_schedule, fit_all
    from trainer.views import views_for, with_views

    told = symmetry and "symmetry" in {f.name for f in dataclasses.fields(TrialConfig)}
    config = TrialConfig(
        backbone="small_cnn",
        image_size=int(train.images.shape[1]),
        weights="none",
        unfreeze_depth=4,
        augment=augment,
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=1e-4,
        batch_size=32,
        epochs=15,
        **({"symmetry": symmetry} if told else {}),
    )
    if seconds is not None:
        deadline = Deadline(at=time.monotonic() + seconds, max_epochs=1000)
        result = fit_all(config, train, 15, deadline=deadline)
        views = views_for(augment, symmetry or "dihedral")
        trained = len(result.epochs)
        what = (
            f"small_cnn, augment {augment}, adamw cosine from 2e-3, {trained} epochs filling "
            f"{seconds / 60:.0f} min at {config.image_size} px, test-time views {views}"
        )
        return with_views(result.model, views), {"model": what, "epochs": trained}
    result = fit_all(config, train, 15, lr_schedule=cosine_schedule(config, 15))
    what = (
        f"small_cnn, augment {augment}, adamw cosine from 2e-3, 15 epochs at {config.image_size} px"
    )
    if symmetry:
        what += f", symmetry {symmetry}" if told else " (flips and turns: no symmetry field yet)"
    return result.model, {"model": what}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--systems", default="ours,hand")
    p.add_argument("--budget", default="30m")
    p.add_argument("--dev", action="store_true", help="score on a dev split, never the quarter")
    p.add_argument("--holdout-seed", type=int, default=0)
    p.add_argument(
        "--conditions", default="", help="what else ran on the machine, shown with the row's date"
    )
    p.add_argument("--dataset", default=BLOOD, choices=list(datasets.LOADERS))
    p.add_argument(
        "--ours-args", default="", help="more flags for ours' search.run command, e.g. '--seed 1'"
    )
    p.add_argument("--no-doc", action="store_true", help="print the rows, write nothing")
    args = p.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    train, test, split = load_split(args.dev, args.holdout_seed, args.dataset)
    print(
        f"{args.dataset}: {len(train)} training images, {len(test)} test images ({split})",
        flush=True,
    )
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    blood = args.dataset == BLOOD
    for system in systems:
        work = Path(tempfile.mkdtemp(prefix=f"e2e-{system}-"))
        start = time.monotonic()
        budget = args.budget
        if system == "ours":
            model, info = run_ours(train, args.budget, work, tuple(shlex.split(args.ours_args)))
        elif system in ("kerastuner", "kerastuner_best", "autokeras"):
            import peers

            seconds = parse_duration(args.budget)
            if system == "autokeras":
                model, info = peers.run_autokeras(train, seconds, work)
            else:
                best = system == "kerastuner_best"
                model, info = peers.run_kerastuner(train, seconds, work, best=best)
        elif system == "svc":
            from baselines import run_svc

            model, info = run_svc(train)
            budget = "none (grid search)"
        elif system == "hand_best":
            model, info = run_hand(
                train, "robust", "" if blood else "none", parse_duration(args.budget)
            )
        else:
            level = "robust" if system == "hand_robust" else "light"
            model, info = run_hand(train, level, "" if blood else "none")
            budget = "none (one run)"
        minutes = (time.monotonic() - start) / 60
        scores = score(model, test) if blood else score_clean(model, test)
        row = {
            "dataset": args.dataset,
            "conditions": args.conditions,
            "system": system,
            "dev": args.dev,
            "split": split,
            "budget": budget,
            "minutes": round(minutes, 2),
            "test_images": len(test),
            "scores": scores,
            "info": info,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
        }
        print(json.dumps(row, indent=1), flush=True)
        if args.no_doc:
            continue
        key = row_key(row)
        rows = [r for r in rows if row_key(r) != key] + [row]
        RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
        write_page(rows)


if __name__ == "__main__":
    main()
