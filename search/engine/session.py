"""One run of the CLI: check everything, create or resume the study, search, summarise.

Order matters: storage, data and flags are all checked before the first write, so bad input
leaves an existing study exactly as it was and creates nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.study import StudyDirection

from search.cli import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from search.data import DataError, fingerprint, load_dataset, validate
from search.data.invariance import measure as measure_invariance
from search.engine.coordinator import Coordinator
from search.engine.devices import (
    DeviceError,
    auto_precision,
    check_backend,
    compile_cache_env,
    discover,
    select,
    worker_envs,
)
from search.engine.finish import (
    BudgetClock,
    FinalSetup,
    final_setup,
    kept_model,
    minutes,
    run_final,
)
from search.engine.plugins import BUILT_IN, resolve_trainer
from search.engine.progress import UNCOUNTED, Progress
from search.engine.request import RunRequest
from search.engine.start_model import StartModel, is_export
from search.engine.trials import RunSettings
from search.engine.warm_start import WarmPoint, read_points
from search.engine.weights import check_weights
from search.engine.worker import write_worker_data
from search.policy.budget import PRIOR_FINAL_SHARE
from search.policy.pruning import FoldEpochPruner, make_pruner
from search.policy.samplers import make_sampler
from search.policy.traits import AUTO, Traits
from search.policy.traits import decide as decide_traits
from search.policy.traits import stored as stored_traits
from search.reporting.dashboard import default_artifact_dir
from search.reporting.summary import run_summary
from search.testing.faults import check_drills
from search.text import counted
from spaces.base import Space, StudySettings
from storage import StorageError, find_storage, open_storage, redact, sqlite_file, storage_errors
from storage.records import (
    COSTS,
    LIMIT_FLAGS,
    STARTING_POINT,
    WARM_START,
    best_so_far,
    count_states,
    objective_cost,
    unmeasured_limit,
)
from storage.study import (
    StudyPlan,
    check_resume,
    decode_folds,
    encode_folds,
    load_existing,
)
from trainer.errors import FatalError, TrialFailed
from trainer.folds import make_folds

log = logging.getLogger(__name__)
# --n-trials under --budget when not given: the budget, not a count, ends the search.
BUDGET_TRIALS = UNCOUNTED
# Heartbeats, fail_stale_trials and TPE's group option are stable enough for us; say it once here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _check_limits(request: RunRequest, objective: str, name: str) -> None:
    """--max-latency-ms and --max-params limit a cost the study measures, or are refused."""
    cost = unmeasured_limit(objective_cost(objective), request.limits())
    if cost is not None:
        raise UsageError(
            f"{LIMIT_FLAGS[cost]} limits the {cost} of the final model's trial, but study "
            f"{name!r} optimises {objective}; run it with --objective accuracy,{cost} (a new "
            "--name for an existing study), or leave the flag out"
        )


def _stored_or(stored: dict, key: str, given, default):
    if given is not None:
        return given
    return stored.get(key, default)


def run_study(request: RunRequest, space: Space) -> int:
    """Check, write the worker data, create or resume the study, search, and with ``--budget``
    train the final model; return the exit code. Four stages: ``prepare`` (every check, nothing
    written), ``open_study`` (the writes, undone if one fails), ``search`` and ``finish``."""
    made = _Created()
    try:
        checked = prepare(request, space)
        opened = open_study(request, checked, made)
    except (UsageError, DataError, StorageError, TrialFailed, DeviceError, ValueError) as exc:
        made.undo()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    done = (
        kept_model(opened.study, checked.final, float(request.budget or 0.0), request.n_trials)
        if checked.final
        else None
    )
    if done is not None:  # the same --budget command run again after it finished
        shutil.rmtree(made.workdir or "", ignore_errors=True)
        print(done)
        return EXIT_OK
    try:
        searched = search(request, checked, opened)
    finally:
        shutil.rmtree(made.workdir or "", ignore_errors=True)
    return finish(request, checked, opened, searched)


@dataclass(frozen=True)
class Checked:
    """What ``prepare`` settled before anything is written."""

    name: str
    space: Space  # narrowed to one backbone under --weights DIR
    found: Any  # the storage when it exists, else None
    existing: optuna.Study | None  # the study when resuming
    plan: StudyPlan
    data: Any  # trainer.records.Dataset, validated (and cleaned with --clean)
    folds: list[Any]
    cleaning: dict | None
    start: StartModel | None  # --weights DIR
    warm: tuple[WarmPoint, ...]  # --warm-start: queued first when the study is created
    portfolio: tuple[dict[str, Any], ...]  # the space's start-up configurations, queued next
    final: FinalSetup | None  # --budget
    n_trials: int
    gpus: list[Any]
    envs: list[dict[str, str]]
    sampler: optuna.samplers.BaseSampler
    pruner: FoldEpochPruner | None


@dataclass(frozen=True)
class Opened:
    """What ``open_study`` wrote: the study, the workers' data and the artifact folder."""

    study: optuna.Study
    data_path: str
    artifact_dir: str
    weights: str  # what every trial loads: --weights, or the file read out of --weights DIR


def prepare(request: RunRequest, space: Space) -> Checked:
    """Every check that can refuse the run, in order; raises UsageError and kin, and leaves
    nothing written (the --export probe's file is removed at once)."""
    name = request.name or space.name
    if request.trainer != "fake":  # the fake trainer needs no Keras backend
        check_backend(request.backend)
    # The workers and (with --budget) the final model in this process run on this backend.
    os.environ["KERAS_BACKEND"] = request.backend
    if request.trainer not in BUILT_IN:
        resolve_trainer(request.trainer)  # import errors now, before anything is written
    check_drills(trial_timeout=request.trial_timeout)
    read = _read(request, space, name)
    start = StartModel.read(read.plan.weights) if is_export(read.plan.weights) else None
    if start is not None:
        space = start.narrow(space)
    check_weights(space, read.plan.weights, request.weights_dir, resuming=read.existing is not None)
    plan, data, folds = read.plan, read.data, read.folds
    _check_limits(request, plan.objective, name)
    settings = _start_settings(plan, request.seed, start)
    warm = _warm_points(request, space, read.existing, settings)
    portfolio = tuple(space.starting_params(settings)) if request.portfolio else ()
    if not request.portfolio and read.existing is not None and read.existing.trials:
        log.info(
            "--no-portfolio ignored: study %r already has trials (it applies when a study is "
            "created; queued trials still waiting will run)",
            read.existing.study_name,
        )
    final = (
        final_setup(request, name, plan, data, folds, read.kept, plan.image_size_fixed)
        if request.budget
        else None
    )
    n_trials = request.n_trials or (BUDGET_TRIALS if final else space.n_trials)
    gpus = select(discover(), request.gpus)
    envs = worker_envs(
        request.workers,
        gpus,
        workers_per_gpu=request.workers_per_gpu,
        memory_mb=request.gpu_memory_mb,
        backend=request.backend,
    )
    if not gpus and (request.workers_per_gpu != 1 or request.gpu_memory_mb is not None):
        log.warning(
            "warning: no GPU is visible, so --workers-per-gpu and --gpu-memory-mb do "
            "nothing; use --workers N to run N CPU workers"
        )
    try:
        pruner = make_pruner(
            request.pruner,
            epochs_per_fold=plan.epochs,
            n_folds=plan.folds,
            n_trials=n_trials,
            workers=len(envs),
            costed=objective_cost(plan.objective) is not None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return Checked(
        name=name,
        space=space,
        found=read.found,
        existing=read.existing,
        plan=plan,
        data=data,
        folds=folds,
        cleaning=read.cleaning,
        start=start,
        warm=warm,
        portfolio=portfolio,
        final=final,
        n_trials=n_trials,
        gpus=gpus,
        envs=envs,
        sampler=make_sampler(request.sampler, request.seed, n_trials),
        pruner=pruner,
    )


def open_study(request: RunRequest, checked: Checked, made: _Created) -> Opened:
    """The first writes, each recorded in ``made`` so that a failure can undo them: the
    workers' data, the artifact folder, the backbone file of --weights DIR, the storage and
    the study."""
    made.workdir, data_path = write_worker_data(checked.data, checked.folds)
    artifact_dir = _artifact_dir(request, made)
    start = checked.start
    weights = start.extract(Path(artifact_dir) / "start_weights") if start else checked.plan.weights
    with storage_errors(request.storage):
        storage = checked.found or _create_storage(request, made)
        study = _open_study(storage, checked)
        if checked.cleaning is not None:
            study.set_user_attr("cleaning", checked.cleaning)
    return Opened(study, data_path, artifact_dir, weights)


def _settings(request: RunRequest, checked: Checked, opened: Opened) -> StudySettings:
    plan, gpus = checked.plan, checked.gpus
    return StudySettings(
        epochs=plan.epochs,
        weights=opened.weights,
        seed=request.seed,
        image_size=plan.image_size,
        precision=request.precision if request.precision != "auto" else auto_precision(gpus),
        jit_compile=request.xla == "on" or (request.xla == "auto" and bool(gpus)),
        backend=request.backend,
        weights_dir=str(Path(request.weights_dir).resolve()) if request.weights_dir else "",
        symmetry=plan.traits["symmetry"],
        colour=plan.traits["colour"],
        start_backbone=checked.start.backbone if checked.start else "",
    )


def _say_start(request: RunRequest, checked: Checked, finished: int) -> None:
    plan, name, n_trials = checked.plan, checked.name, checked.n_trials
    if finished >= n_trials:
        log.info(
            "study %r in %s already holds %s (--n-trials %d): no new trial to run; "
            "pass a larger --n-trials to search further",
            name,
            redact(request.storage),
            counted(finished, "finished trial"),
            n_trials,
        )
        return
    devices = sorted({e["CUDA_VISIBLE_DEVICES"] for e in checked.envs})
    where = "CPU" if devices == ["-1"] else "GPU " + ", ".join(devices)
    log.info(
        "study %r in %s: %d of %d trials finished; %s on %s (Keras on %s); %d folds x %d "
        "epochs at %dpx on %d images",
        name,
        redact(request.storage),
        finished,
        n_trials,
        counted(len(checked.envs), "worker"),
        where,
        request.backend,
        plan.folds,
        plan.epochs,
        plan.image_size,
        plan.n_images,
    )


def _budget_clock(study: optuna.Study, request: RunRequest, final: FinalSetup) -> BudgetClock:
    clock = BudgetClock(study, float(request.budget or 0.0), final.inputs, max_cost=final.max_cost)
    log.info(
        "budget %s: %.1f min spent before this run; the search runs until only the final "
        "model's reserve is left (%.0f%% of the budget until a trial completes, then the "
        "best trial's measured cost), then the best trial trains on all %d images at %dpx "
        "with augmentation %s and is exported to %s",
        minutes(clock.budget),
        clock.spent_before / 60,
        100 * PRIOR_FINAL_SHARE,
        final.inputs.all_images,
        final.inputs.final_size,
        {
            "searched": "as it searched",
            "auto": "robust if a paired check on fold 0 takes it, else as it searched",
        }.get(final.inputs.augment, final.inputs.augment),
        final.out,
    )
    return clock


@dataclass(frozen=True)
class Searched:
    """How the search ended: its exit code, the coordinator and the budget's clock."""

    code: int
    coordinator: Coordinator
    clock: BudgetClock | None


def search(request: RunRequest, checked: Checked, opened: Opened) -> Searched:
    """Run the coordinator until the trials, the timeout or the search's share of the budget
    are done."""
    study, n_trials = opened.study, checked.n_trials
    counts = count_states(study)
    finished = counts[optuna.trial.TrialState.COMPLETE] + counts[optuna.trial.TrialState.PRUNED]
    _say_start(request, checked, finished)
    clock = _budget_clock(study, request, checked.final) if checked.final is not None else None
    coordinator = Coordinator(
        study,
        checked.space,
        _settings(request, checked, opened),
        RunSettings(
            n_trials=n_trials,
            metric=checked.plan.metric,
            timeout=request.timeout,
            max_consecutive_failures=request.max_failures,
            trainer=request.trainer,
            heartbeat_seconds=request.heartbeat,
            trial_timeout=request.trial_timeout,
            artifact_dir=opened.artifact_dir,
            search_left=clock.search_left if clock else None,
        ),
        data_path=opened.data_path,
        worker_envs=[env | compile_cache_env(opened.artifact_dir) for env in checked.envs],
        pruner=checked.pruner,
        class_names=list(checked.plan.class_names),
        progress=Progress(
            n_trials,
            interactive=sys.stderr.isatty() and not request.quiet,
            done=finished,
            best=best_so_far(study),
        ),
    )
    return Searched(_run(coordinator, request.storage), coordinator, clock)


def _run(coordinator: Coordinator, storage: str) -> int:
    """The coordinator's run as an exit code, each way it can end said in one line."""
    try:
        coordinator.run()
    except KeyboardInterrupt:
        print(
            "\ninterrupted: running trials were marked failed and will be re-run when you "
            "run the same command again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
        print(
            f"error: the storage {redact(storage)} failed while searching "
            f"({str(exc).splitlines()[0][:300]}); finished trials are kept: fix it and run the "
            "same command to resume",
            file=sys.stderr,
        )
        return EXIT_FATAL
    return EXIT_OK


def finish(request: RunRequest, checked: Checked, opened: Opened, searched: Searched) -> int:
    """The run's summary, then with --budget (and a search that ended well) the final model."""
    code = searched.code
    study, n_trials = opened.study, checked.n_trials
    try:
        with contextlib.suppress(Exception):  # the summary must not hide the real exit status
            limit = n_trials if n_trials < BUDGET_TRIALS else None  # --budget alone: no count
            print(
                run_summary(
                    study,
                    request.storage,
                    checked.name,
                    limit,
                    opened.artifact_dir,
                    checked.plan.metric,
                )
            )
    except KeyboardInterrupt:  # between the search and the final model: nothing half-done
        print("\ninterrupted: the study is kept; run the same command again", file=sys.stderr)
        return EXIT_INTERRUPTED
    if code == EXIT_OK and checked.final is not None and searched.clock is not None:
        code = run_final(study, checked.final, searched.clock, request)
        searched.coordinator.dashboard.study_changed()  # the note now leads with the final model
    return code


@dataclass
class _Created:
    """What this run has created so far, so that a refused run can remove it again."""

    workdir: str | None = None
    folders: list[Path] = field(default_factory=list)
    database: Path | None = None

    def undo(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        for folder in reversed(self.folders):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        if self.database is not None and not _holds_a_study(self.database):
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(str(self.database) + suffix).unlink()


def _holds_a_study(database: Path) -> bool:
    """Whether a SQLite file holds any study (another coordinator may have made one in a file
    this run created: then it is not this run's to remove)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return bool(db.execute("SELECT count(*) FROM studies").fetchone()[0])
    except sqlite3.Error:
        return False  # no schema (or no file): nothing of anyone's in it


def _storage_options(request: RunRequest) -> dict[str, int]:
    return {
        "heartbeat_interval": max(1, round(request.heartbeat)),
        "grace_period": max(2, round(3 * request.heartbeat)),
    }


@dataclass(frozen=True)
class _Read:
    """The storage, the study when resuming, the study's plan, and its data and folds."""

    found: Any
    existing: optuna.Study | None
    plan: StudyPlan
    data: Any
    folds: list[Any]
    cleaning: dict | None
    kept: Any  # the indices --clean kept, None without it


def _read(request: RunRequest, space: Space, name: str) -> _Read:
    """Read the storage and the data and settle the study's plan; nothing is written here."""
    found = find_storage(request.storage, **_storage_options(request))
    existing = None
    if found is not None:
        with storage_errors(request.storage):
            existing = load_existing(found, name)
    stored = dict(existing.user_attrs) if existing is not None else {}
    folds_k = _stored_or(stored, "folds", request.folds, space.folds)
    epochs = _stored_or(stored, "epochs", request.epochs, space.epochs)
    image_size = _stored_or(stored, "image_size", request.image_size, space.image_size)
    weights = _stored_or(stored, "weights", request.weights, space.weights)
    metric = _stored_or(stored, "metric", request.metric, "accuracy")
    if "fold_of" in stored:
        stored.setdefault("objective", "accuracy")  # studies made before --objective existed
    objective = _stored_or(stored, "objective", request.objective, "accuracy")
    if request.weights_dir:
        if not Path(request.weights_dir).is_dir():
            raise UsageError(f"--weights-dir {request.weights_dir} is not a folder")
    if weights not in ("imagenet", "none") and not Path(weights).expanduser().exists():
        raise UsageError(
            f"--weights {weights!r} is neither imagenet, none, a weights file nor an export folder"
        )
    data = load_dataset(request.data, image_size=image_size)
    cleaning: dict | None = None
    kept = None
    if request.clean:
        from search.cleaning import CleanOptions, clean  # scikit-learn only when asked

        result = clean(data, CleanOptions())
        data, cleaning, kept = result.dataset, result.summary, result.kept
        log.info("cleaning kept %d of %d images", cleaning["n_kept"], cleaning["n_input"])
    data = validate(data, n_folds=folds_k, source=request.data)
    traits = _traits(request, space, stored, data, name)
    plan = StudyPlan(
        space=space.name,
        data=request.data,
        fingerprint=fingerprint(data),
        n_images=len(data),
        class_names=data.class_names,
        folds=folds_k,
        fold_seed=request.seed,
        epochs=epochs,
        image_size=image_size,
        metric=metric,
        objective=objective,
        weights=weights,
        image_size_fixed=request.image_size is not None or bool(stored.get("image_size_fixed")),
        traits=traits.attrs(),
    )
    if existing is not None:
        check_resume(stored, plan, name)
    if "fold_of" in stored:
        folds = decode_folds(stored["fold_of"])
    else:
        folds = make_folds(data.labels, folds_k, request.seed)
    return _Read(found, existing, plan, data, folds, cleaning, kept)


def _traits(request: RunRequest, space: Space, stored: dict, data, name: str) -> Traits:
    """The study's symmetry and colour: a resumed study's own (a declared value that differs is
    refused), else as declared or measured on the data now."""
    symmetry = request.symmetry or space.symmetry
    colour = request.colour or space.colour
    if "fold_of" in stored:
        traits = stored_traits(stored)
        for flag, given, kept in (
            ("symmetry", symmetry, traits.symmetry),
            ("colour", colour, traits.colour),
        ):
            if given != AUTO and given != kept:
                raise UsageError(
                    f"study {name!r} was created with --{flag} {kept}, not {given}; resume with "
                    f"--{flag} {kept} (or leave the flag out), or use a new --name"
                )
        return traits
    if AUTO in (symmetry, colour):
        log.info("reading the images' symmetry and colour from %d images ...", len(data))
    traits = decide_traits(
        symmetry, colour, lambda: measure_invariance(data.images, data.labels, seed=request.seed)
    )
    log.info("symmetry %s (%s)", traits.symmetry, traits.symmetry_reason)
    log.info("colour %s (%s)", traits.colour, traits.colour_reason)
    return traits


def _create_storage(request: RunRequest, made: _Created) -> optuna.storages.RDBStorage:
    """Open the storage, creating its database (a new SQLite file is recorded in ``made``)."""
    database = sqlite_file(request.storage)
    new_file = database is not None and not database.exists()
    storage = open_storage(request.storage, **_storage_options(request))
    if new_file:
        made.database = database
    return storage


def _artifact_dir(request: RunRequest, made: _Created) -> str:
    """The dashboard's artifact folder, created (recorded in ``made``) and checked writable."""
    folder = Path(request.artifacts or default_artifact_dir(request.storage)).expanduser().resolve()
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        for parent in reversed(missing):
            try:
                parent.mkdir()
            except FileExistsError:
                # Another host or worker sharing this study made it between the check and here.
                if not parent.is_dir():
                    raise
                continue
            made.folders.append(parent)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"the artifacts folder {folder} is not writable ({exc}); pass "
            "--artifacts DIR with a writable folder"
        ) from exc
    return str(folder)


def _start_settings(plan: StudyPlan, seed: int, start: StartModel | None) -> StudySettings:
    """What the queued configurations are fitted to (the rest comes later, per run)."""
    return StudySettings(
        epochs=plan.epochs,
        weights=plan.weights,
        seed=seed,
        image_size=plan.image_size,
        start_backbone=start.backbone if start else "",
    )


def _warm_points(
    request: RunRequest, space: Space, existing: optuna.Study | None, settings: StudySettings
) -> tuple[WarmPoint, ...]:
    """--warm-start's configurations, read and fitted now (before any write); none on resume."""
    if not request.warm_start:
        return ()
    if existing is not None and existing.trials:
        log.info(
            "--warm-start ignored: study %r already has trials (it applies when a study is "
            "created)",
            existing.study_name,
        )
        return ()
    points = read_points(request.warm_start, request.storage, space, settings)
    for point in points:
        changed = f" ({'; '.join(point.notes)})" if point.notes else ""
        log.info(
            "warm start: %s (%.4f there) queued to be re-scored here%s",
            point.origin,
            point.value,
            changed,
        )
    return points


def _open_study(storage: Any, checked: Checked) -> optuna.Study:
    """The first writes. A new study that cannot be fully set up is deleted again."""
    name, existing, plan = checked.name, checked.existing, checked.plan
    sampler, pruner, folds = checked.sampler, checked.pruner, checked.folds
    cost = objective_cost(plan.objective)
    costs = [cost] if cost else []  # --objective's cost, minimised beside the score
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=[StudyDirection.MAXIMIZE] + [StudyDirection.MINIMIZE for _ in costs],
        load_if_exists=True,
    )
    names = [plan.metric, *(COSTS[c] for c in costs)]  # the dashboard's names for the objectives
    if existing is not None and "fold_of" in existing.user_attrs:
        study.set_user_attr("runs", int(existing.user_attrs.get("runs", 1)) + 1)  # probes writes
        if study.metric_names is None:
            study.set_metric_names(names)
        return study
    try:
        study.set_metric_names(names)
        for key, value in plan.attrs(encode_folds(folds, plan.n_images)).items():
            study.set_user_attr(key, value)
        study.set_user_attr("runs", 1)
        if not study.trials:  # at most --n-trials of them: none left waiting at the end
            warm = checked.warm[: checked.n_trials]
            for point in warm:  # the earlier studies' best first
                study.enqueue_trial(
                    point.params, user_attrs={WARM_START: point.origin}, skip_if_exists=True
                )
            room = max(0, checked.n_trials - len(warm))
            for params in checked.portfolio[:room]:
                study.enqueue_trial(params, user_attrs={STARTING_POINT: True}, skip_if_exists=True)
            if len(checked.warm) > len(warm) or len(checked.portfolio) > room:
                log.info(
                    "--n-trials %d holds %d of the %d starting configurations (%d from "
                    "--warm-start first, then %d of the portfolio's %d); the rest are not queued",
                    checked.n_trials,
                    len(warm) + min(room, len(checked.portfolio)),
                    len(checked.warm) + len(checked.portfolio),
                    len(warm),
                    min(room, len(checked.portfolio)),
                    len(checked.portfolio),
                )
    except Exception:
        if existing is None:
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=name, storage=storage)
        raise
    return study
