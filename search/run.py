"""``python -m search.run --study NAME``: run (or resume) a hyperparameter search.

Imports stay light at module level so ``--help`` answers without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from search.cli import Parser, UsageError, setup_logging, usage_error
from search.engine.devices import default_backend
from search.engine.plugins import parse_trainer
from spaces import SPACES
from spaces.base import Space
from storage import DEFAULT_URL
from trainer.config import AUGMENT_LEVELS, BACKENDS, COLOURS, MONITORS, SYMMETRIES
from trainer.folds import MAX_FOLDS

log = logging.getLogger("search.run")

SAMPLERS = ("tpe", "random", "gp")


def _duration(text: str) -> float:
    from search.policy.budget import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _what_and_where(p: argparse.ArgumentParser) -> None:
    """--help's flags: study, space, data and storage."""
    p.add_argument(
        "--study",
        default=None,
        metavar="NAME",
        help=f"search space: {', '.join(SPACES)} (required unless --space-file is given)",
    )
    p.add_argument(
        "--space-file",
        default=None,
        metavar="PATH",
        help="a JSON file of Space fields (see README); read only when named here",
    )
    p.add_argument(
        "--name", default=None, help="study name in the storage (default: the --study name)"
    )
    p.add_argument(
        "--data",
        default="demo",
        metavar="PATH|demo|demo-orientation|bloodmnist",
        help="an .npz (images/labels[/class_names] or MedMNIST layout), a folder of "
        "class folders, 'demo' (generated, default), 'demo-orientation' (generated; classes "
        "differ only by a turn) or 'bloodmnist' (downloaded)",
    )
    p.add_argument(
        "--clean",
        action="store_true",
        help="first drop exact/near duplicates and outliers from the data, as "
        "python -m search.clean does at its defaults (likely mislabels are only counted); "
        "the summary is stored on the study as user attribute 'cleaning' "
        "(for other options run python -m search.clean and pass its output as --data)",
    )
    p.add_argument(
        "--storage",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"SQLAlchemy URL of the study database (default {DEFAULT_URL})",
    )
    p.add_argument(
        "--artifacts",
        default=None,
        metavar="DIR",
        help="folder for dashboard artifacts (confusion matrices); default: artifacts/ beside "
        "the SQLite file, else ./artifacts",
    )


def _budget(p: argparse.ArgumentParser) -> None:
    """--help's flags: how long: trials, budget, the final model."""
    p.add_argument(
        "--n-trials",
        type=int,
        default=None,
        metavar="N",
        help="finished (complete or pruned) trials the study should hold in total; "
        "a resumed run only does the remainder (default: the space's)",
    )
    p.add_argument(
        "--budget",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="the whole job's wall-clock budget (s, m, h or plain seconds, e.g. 30m): search, "
        "then train the best trial at full fidelity on all images and export it to --export; "
        "a resumed study counts the time it already spent",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="with --budget: where the final model goes (default models/<study name>; the "
        "files search.export writes, replaced by each --budget run that trains one; the same "
        "command run again after it finished keeps it)",
    )
    p.add_argument(
        "--final-augment",
        default=None,
        choices=("auto", *AUGMENT_LEVELS, "searched"),
        help="with --budget: the final model's augmentation level. auto (default): robust "
        "(exposure, colour as --colour allows, defocus, sensor noise, JPEG, turns as --symmetry "
        "allows), but only when a paired check on a held-back fold of this data scores it above "
        "the best trial's own level (clean and corrupted accuracy); else the trial's own. "
        "'searched' keeps the trial's level without the check; a level forces it",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --budget: build test-time views into the final model, which then averages "
        "its softmax over the views of the study's symmetry (8 dihedral, or the image and its "
        "mirror; none where turns change the label). Default: on when the final model trains "
        "under an augmentation level",
    )


def _fidelity(p: argparse.ArgumentParser) -> None:
    """--help's flags: what augmentation may change, folds, epochs, image size."""
    p.add_argument(
        "--symmetry",
        default=None,
        choices=("auto", *SYMMETRIES),
        help="which turns keep an image's label: dihedral (quarter turns and mirror: cells, "
        "tissue, aerial images), mirror (left-right only: photos of things, scenes), none "
        "(digits, text, signs, radiographs with a side). auto (the space's default): measured "
        "on the data before the first trial and said in the log, the study and the export. "
        "Augmentation, the robustness score and test-time views follow it",
    )
    p.add_argument(
        "--colour",
        default=None,
        choices=("auto", *COLOURS),
        help="whether augmentation may shift hue and saturation: shift (colour is noise, e.g. "
        "stain), keep (colour carries the label). auto (the space's default): measured on the "
        "data (does a grey-image classifier do as well?)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new trial after this many seconds (running ones finish)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help=f"cross-validation folds, 2 to {MAX_FOLDS} (default: the space's)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="E",
        help="maximum epochs per fold (default: the space's)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help="train at PX x PX (default: the space's); images are resized with Lanczos",
    )


def _devices(p: argparse.ArgumentParser) -> None:
    """--help's flags: workers, GPUs, precision, backend."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: one per visible GPU, else one)",
    )
    p.add_argument(
        "--gpus",
        default=None,
        metavar="LIST",
        help="GPU ids to use, e.g. 0,1 (default: every visible GPU)",
    )
    p.add_argument(
        "--workers-per-gpu",
        type=int,
        default=1,
        metavar="N",
        help="pack N workers on each GPU, each capped to its share of the memory (default 1)",
    )
    p.add_argument(
        "--gpu-memory-mb",
        type=int,
        default=None,
        metavar="MB",
        help="memory cap per worker when packing (default: 90%% of the card / workers on it)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
        help="auto: bfloat16 on Ampere+, float16 with loss scaling on Volta/Turing, float32 on "
        "CPU; the softmax head always computes in float32",
    )
    p.add_argument(
        "--backend",
        default=default_backend(),
        choices=BACKENDS,
        help="the Keras 3 backend every trial (and the --budget model) runs on (default: "
        "KERAS_BACKEND if set, else tensorflow; jax and torch need .[jax] / .[torch])",
    )
    p.add_argument(
        "--xla",
        default="auto",
        choices=("auto", "on", "off"),
        help="XLA-compile the training step (auto: on with GPUs; falls back to plain graph "
        "mode if a model cannot be compiled)",
    )


def _policy(p: argparse.ArgumentParser) -> None:
    """--help's flags: seed, pruner, sampler, weights, metric."""
    from search.policy.pruning import PRUNERS

    p.add_argument(
        "--seed", type=int, default=0, help="seed for folds, sampler and trials (default 0)"
    )
    p.add_argument(
        "--pruner",
        default="default",
        choices=PRUNERS,
        help="default: stop 15 points behind the best trial inside a fold + paired fold test "
        "after every fold, after screening the first 3 or 4 trials on one fold (studies of "
        "10+ trials with 2+ folds); "
        "none turns pruning off (docs/pruning.md)",
    )
    p.add_argument(
        "--sampler",
        default="tpe",
        choices=SAMPLERS,
        help="tpe (default, multivariate), random, gp (needs torch)",
    )
    p.add_argument(
        "--warm-start",
        action="append",
        default=None,
        metavar="STUDY|STUDY@URL",
        help="start a new study from the best configurations of an earlier one (in --storage, "
        "or in the database at URL; repeatable): its best 3 complete trials, fitted to this "
        "space, are queued first and trained on this study's data like any trial, so the "
        "earlier best is trial 0. Applies when the study is created; ignored on resume",
    )
    p.add_argument(
        "--no-portfolio",
        dest="portfolio",
        action="store_false",
        help="do not queue the space's portfolio (its start-up configurations, chosen on "
        "recorded tables of several datasets: docs/portfolio.md) before the sampler's own "
        "trials. Applies when the study is created",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="imagenet|none|PATH|DIR",
        help="backbone weights (default: the space's; quick uses none): ImageNet's, none, a "
        "weights file, or an export folder (search.export or --budget) whose backbone starts "
        "the study, e.g. to adapt a model to another microscope from a few labelled images; "
        "the search keeps that backbone and searches unfreeze depth",
    )
    p.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="folder of pre-downloaded Keras ImageNet weight files (offline clusters); missing "
        "files are found before the first trial",
    )
    p.add_argument(
        "--metric",
        default=None,
        choices=MONITORS,
        help="score: mean over folds of each fold's best epoch (default: accuracy, or the "
        "resumed study's); "
        "robust_accuracy also validates under seeded corruptions (blur, noise, JPEG, "
        "brightness/contrast, stain shift, rotation) and scores the mean of clean and corrupted",
    )

    p.add_argument(
        "--objective",
        default=None,
        metavar="accuracy[,latency|,params]",
        help="what the study optimises (default: accuracy, or the resumed study's): the --metric "
        "score alone, or with a cost minimised beside it, a multi-objective study whose Pareto "
        "front search.report and the dashboard show: latency (each architecture's median "
        "single-image inference milliseconds on its worker's device, measured before it "
        "trains) or params (its parameter count). Pruning then compares a trial only with "
        "trials that cost no more; --pruner median and halving and the first-fold screen do "
        "not apply",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        metavar="MS",
        help="with --budget and --objective accuracy,latency: the final model is the most "
        "accurate trial of the front within MS, and keeps its test-time views only while they "
        "fit (views x latency <= MS)",
    )
    p.add_argument(
        "--max-params",
        type=int,
        default=None,
        metavar="N",
        help="with --budget and --objective accuracy,params: the final model is the most "
        "accurate trial of the front with at most N parameters",
    )


def _robustness(p: argparse.ArgumentParser) -> None:
    """--help's flags: failures, timeouts, heartbeat, trainer."""
    p.add_argument(
        "--max-failures",
        type=int,
        default=5,
        metavar="N",
        help="stop the study after N trials fail in a row (default 5)",
    )
    p.add_argument(
        "--trial-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail a trial (and restart its worker) when it runs longer than this",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="heartbeat interval; a dead host's running trials are failed and re-run after "
        "3x this (default 20)",
    )
    p.add_argument(
        "--trainer",
        default="keras",
        type=parse_trainer,
        metavar="{keras,fake,MODULE:FUNCTION}",
        help="keras (real training), fake (instant deterministic stand-in, for tests) or "
        "MODULE:FUNCTION, a callable with trainer.train_trial's signature, importable by the "
        "workers (the benchmarks replay recorded training this way)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")


def build_parser() -> argparse.ArgumentParser:

    p = Parser(
        prog="python -m search.run",
        description="Search backbones, unfreeze depth, augmentation and optimizers for an image "
        "classifier, scored by stratified k-fold cross-validation. Re-run the same command to "
        "resume a stopped study.",
        epilog="Exit codes: 0 done, 1 the study stopped (repeated failures, every backbone's "
        "weights failing to load, a storage error) or the --budget final model failed, "
        "2 bad usage or input (nothing is written: no database, artifacts folder or temporary "
        "folder), 130 interrupted (re-run the same command to resume).",
    )
    _what_and_where(p)
    _budget(p)
    _fidelity(p)
    _devices(p)
    _policy(p)
    _robustness(p)
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    return p


def _space(args: argparse.Namespace) -> Space:
    """The space --space-file or --study names; UsageError when neither or they disagree."""
    if args.space_file:
        from spaces.file import SpaceFileError, load_space_file

        try:
            space = load_space_file(args.space_file)
        except SpaceFileError as exc:
            raise UsageError(str(exc)) from exc
        if args.study not in (None, space.name):
            raise UsageError(
                f"--study {args.study} differs from the space file's name "
                f"{space.name!r}; leave --study out or make them agree"
            )
        return space
    if args.study is None:
        raise UsageError(f"--study NAME is required; valid studies: {', '.join(SPACES)}")
    found = SPACES.get(args.study)
    if found is None:
        raise UsageError(f"unknown study {args.study!r}; valid studies: {', '.join(SPACES)}")
    return found


COUNTS = (
    "n_trials",
    "folds",
    "epochs",
    "workers",
    "image_size",
    "max_failures",
    "workers_per_gpu",
    "gpu_memory_mb",
)
# Flags that only mean something for a --budget run, and where to go without one.
BUDGET_ONLY = {
    "final_augment": "--final-augment needs --budget (it sets the augmentation of the --budget "
    "run's final model); search.export --study NAME --out DIR exports with the trial's own",
    "max_latency_ms": "--max-latency-ms needs --budget (it limits the --budget run's final "
    "model); search.export --max-latency-ms MS picks the front's point by hand",
    "max_params": "--max-params needs --budget (it limits the --budget run's final model); "
    "search.export --max-params N picks the front's point by hand",
    "export": "--export DIR needs --budget (it names where the --budget run's final model goes); "
    "to export a study by hand run python -m search.export --study NAME --out DIR",
}


def _check_numbers(args: argparse.Namespace) -> None:
    """Counts at least 1 (folds 2, at most MAX_FOLDS), durations positive, budget-only flags
    only with --budget; UsageError names the flag."""
    for flag in COUNTS:
        value = getattr(args, flag)
        least = 2 if flag == "folds" else 1
        if value is not None and value < least:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least {least}, got {value}")
    if args.folds is not None and args.folds > MAX_FOLDS:
        raise UsageError(
            f"--folds must be at most {MAX_FOLDS} (a study stores one character per image for "
            f"its fold), got {args.folds}"
        )
    if args.objective is not None:
        from storage.records import parse_objective

        try:
            args.objective = parse_objective(args.objective)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    for flag in ("timeout", "trial_timeout", "heartbeat", "max_latency_ms", "max_params"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if args.budget is None:
        for flag, message in BUDGET_ONLY.items():
            if getattr(args, flag) is not None:
                raise UsageError(message)
        if args.tta is not None:
            raise UsageError(
                f"--{'' if args.tta else 'no-'}tta needs --budget (it sets the views of the "
                "--budget run's final model); search.export takes --tta/--no-tta for an export "
                "by hand"
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet, verbose=args.verbose)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        space = _space(args)
        _check_numbers(args)
    except UsageError as exc:
        return usage_error(str(exc))
    if args.final_augment is None:
        args.final_augment = "auto"
    from search.engine.request import RunRequest
    from search.engine.session import run_study

    return run_study(RunRequest.of(vars(args)), space)


if __name__ == "__main__":
    sys.exit(main())
