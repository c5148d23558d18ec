"""Search efficiency and pruning savings against KerasTuner and plain Optuna (issue 7, items 1-2).

Nine systems search the same space, the table's grid (table A: backbone small_cnn or
MobileNetV3Small, augmentation none/light/heavy, optimizer AdamW/Ranger, learning rate
log-uniform over the grid's span; table B adds head width and batch size; every other knob,
class weighting included, fixed to the value the table was trained with) on the same folds
(the table's), with the same early stopping (patience 2), for several seeds each:

  ours             python -m search.run (its default TPE sampler and default pruner), run for
                   real through the CLI, coordinator and worker process, opening with the quick
                   space's portfolio where the table's grid holds its points (bench/portfolio.py
                   chose it on other images: none of table B's)
  ours-noportfolio the same with --no-portfolio (the sampler's random start-up, as before it)
  ours-nopruning   the same with --pruner none (item 2's baseline)
  optuna-tpe       a hand-written Optuna loop: TPESampler(seed) defaults (10 random start-up
                   trials), no pruner
  optuna-tpe-eq    the same with ours' 6 start-up trials
  random           the same loop with RandomSampler
  kt-hyperband     KerasTuner 1.4 Hyperband (max_epochs = the table's epochs, factor 3; every
                   rung trains all folds)
  kt-hyperband-fe  the same with fold-epochs as Hyperband's resource (max_epochs = folds x
                   epochs; a rung of r trains the first r fold-epochs, fold by fold)
  kt-bayesian      KerasTuner 1.4 BayesianOptimization (its defaults: 3 x dimensions random
                   start-up trials)
  kt-bayesian-eq   the same with ours' 6 start-up trials

Every system trains through one table of real training runs (bench/hpo_table.py, read by
bench/replay.py), so all see identical per-epoch validation accuracy and pay for exactly the
fold-epochs they train; the comparison measures search and pruning, not a training recipe.
Compute is counted in fold-epochs and in training seconds (the recorded epoch times, plus a
model build and trace for each new model: a Hyperband continuation and a trial of ours
promoted by the screen both pay a new build and trace).

A system's "best" at a given compute is the full cross-validated accuracy (all folds, all
epochs, early stopping) of the configuration that system would report as its best at that
point: for Optuna studies the best complete trial, for KerasTuner the best-scoring trial even if
it was trained for fewer epochs (this favours Hyperband, which is not charged for finishing it).

    python bench/search_efficiency.py [--seeds 10] [--budget N] [--n-trials 60] [--pruned-trials 200]

Writes docs/search_efficiency.md and two plots next to it, and prints one ratio per figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from common import ROOT, save_npz, table_data  # noqa: I001
from replay import Table, load_table, run_fold

from search.atomic import atomic_write_bytes
from spaces import SPACES

BENCH = Path(__file__).resolve().parent
SYSTEMS = (
    "ours",
    "ours-rebuild",
    "ours-noportfolio",
    "ours-nopruning",
    "optuna-tpe",
    "optuna-tpe-eq",
    "random",
    "kt-hyperband",
    "kt-hyperband-fe",
    "kt-bayesian",
    "kt-bayesian-eq",
)
PATIENCE = 2
# Random trials before the model-based samplers start: what ours' TPE draws for the runs here
# (search.policy.samplers: min(6, max(4, n_trials // 4))). The "-eq" peers get the same.
STARTUP = 6


@dataclass
class Run:
    """One search: per trial in the order it finished, its cost and what the system saw."""

    system: str
    seed: int
    fold_epochs: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    reported: list[float | None] = field(default_factory=list)  # None: pruned/failed
    true: list[float] = field(default_factory=list)  # full CV score of that configuration
    wall: float = 0.0
    kinds: list[str] = field(default_factory=list)  # pruner_sweep's replay: what each trial was

    def add(self, fold_epochs: int, seconds: float, reported: float | None, true: float) -> None:
        self.fold_epochs.append(fold_epochs)
        self.seconds.append(seconds)
        self.reported.append(reported)
        self.true.append(true)

    def curve(self, unit: str = "fold_epochs") -> tuple[np.ndarray, np.ndarray]:
        """Cumulative cost after each trial, and the true score of the incumbent then."""
        cost = np.cumsum(self.fold_epochs if unit == "fold_epochs" else self.seconds)
        best_seen, incumbent, values = -math.inf, math.nan, []
        for rep, true in zip(self.reported, self.true, strict=True):
            if rep is not None and rep > best_seen:
                best_seen, incumbent = rep, true
            values.append(incumbent)
        return cost.astype(float), np.array(values)

    def best_at(self, budget: float, unit: str = "fold_epochs") -> float:
        cost, values = self.curve(unit)
        inside = np.flatnonzero(cost <= budget + 1e-9)
        return float(values[inside[-1]]) if len(inside) else math.nan

    def cost_to_reach(self, target: float, unit: str = "fold_epochs") -> float:
        cost, values = self.curve(unit)
        hit = np.flatnonzero(np.nan_to_num(values, nan=-1.0) >= target - 1e-9)
        return float(cost[hit[0]]) if len(hit) else math.inf


# -- scoring helpers shared by every system ---------------------------------------------------


def true_score(table: Table, entry: dict) -> float:
    return math.nan if entry["failed"] else full_trial(table, entry)[2]


def full_trial(table: Table, entry: dict) -> tuple[int, float, float]:
    """Train all folds to the end (early stopping on): fold-epochs, seconds, CV score."""
    fold_epochs, seconds, best = 0, entry["build_seconds"], []
    for f in range(table.folds):
        accs, secs, _ = run_fold(entry, f, table.epochs, PATIENCE)
        fold_epochs += len(accs)
        seconds += sum(secs)
        best.append(max(accs))
    return fold_epochs, seconds, float(np.mean(best))


# -- ours, through the real CLI ----------------------------------------------------------------


def portfolio_points(table: Table, without: str | None = None) -> list[dict]:
    """The quick space's portfolio points that the table's grid holds (what ours opens with);
    with ``without``, the portfolio bench/portfolio.py chose with that dataset's table left out
    (docs/portfolio.json), in its order."""
    grid = {"head_width": [0], "batch_size": [32], **table.grid}
    return [
        dict(p)
        for p in (SPACES["quick"].starting_points if without is None else chosen_without(without))
        if all(p[k] in v for k, v in grid.items() if k != "learning_rate")
        and math.isclose(table.snap(p["learning_rate"]), p["learning_rate"])
    ]


def _typed(kind: type, text: str) -> Any:
    return text == "True" if kind is bool else kind(text)  # bool("False") is True


def chosen_without(dataset: str) -> list[dict]:
    """docs/portfolio.json's portfolio chosen without ``dataset``'s table, as full points (the
    knobs its keys leave out at the shipped points' values)."""
    result = json.loads((ROOT / "docs" / "portfolio.json").read_text())
    entry = next((e for e in result["left_out"] if e["dataset"] == dataset), None)
    if entry is None:
        known = ", ".join(e["dataset"] for e in result["left_out"])
        raise SystemExit(
            f"docs/portfolio.json has no portfolio chosen without {dataset!r} ({known})"
        )
    fixed = dict(SPACES["quick"].starting_points[0])
    types = {k: type(v) for k, v in fixed.items()}
    points = []
    for key in entry["portfolio"]:
        pairs = dict(part.split("=", 1) for part in key.split("|"))
        points.append({**fixed, **{k: _typed(types[k], v) for k, v in pairs.items()}})
    return points


def space_file(
    table: Table,
    directory: Path,
    n_trials: int,
    portfolio: bool = True,
    without: str | None = None,
) -> Path:
    lo, hi = table.lr_range()
    space = {
        "name": "bench",
        "description": "issue 7 benchmark grid (bench/hpo_table.py)",
        "backbones": table.grid["backbone"],
        "image_size": table.setup["size"],
        "folds": table.folds,
        "epochs": table.epochs,
        "n_trials": n_trials,
        "weights": "none",
        "augment_levels": table.grid["augment"],
        "optimizers": table.grid["optimizer"],
        "learning_rate": [lo, hi],
        # Fixed in the table: single-valued ranges, so every system searches the table's knobs.
        "weight_decay": [1e-4, 1e-4],
        "l2": [1e-6, 1e-6],
        "dropout": [0.2, 0.2],
        "head_widths": table.grid.get("head_width", [0]),
        "batch_sizes": table.grid.get("batch_size", [32]),
        "label_smoothing": [0.0, 0.0],
        "class_weighting": [False],  # the table was trained without class weights
        "patience": PATIENCE,
        "starting_points": portfolio_points(table, without) if portfolio else [],
    }
    path = directory / "space.json"
    path.write_text(json.dumps(space))
    return path


def run_ours(
    table: Table,
    table_path: Path,
    seed: int,
    pruner: str,
    n_trials: int,
    work: Path,
    portfolio: bool = True,
    without: str | None = None,
):
    db = work / f"ours-{pruner}-{portfolio}-{seed}.db"
    cmd = [
        sys.executable, "-m", "search.run",
        "--space-file", str(space_file(table, work, n_trials, portfolio, without)),
        "--data", str(work / "data.npz"),
        "--storage", f"sqlite:///{db}",
        "--artifacts", str(work / "artifacts"),
        "--n-trials", str(n_trials),
        "--seed", str(seed),
        "--pruner", pruner,
        "--trainer", "replay:train_trial",
        "-q",
    ]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=f"{BENCH}{os.pathsep}{ROOT}", HPO_TABLE=str(table_path.resolve())
    )
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    name = {"default": "ours", "none": "ours-nopruning"}.get(pruner, f"ours-{pruner}")
    if not portfolio:
        name = f"ours-noportfolio{'' if pruner == 'default' else '-' + pruner}"
    run, rebuild = Run(name, seed), Run(f"{name}-rebuild", seed)
    run.wall = rebuild.wall = time.perf_counter() - start
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}")
    kept = KeptModels()
    for t in sorted(study.trials, key=lambda t: t.number):  # one worker: its order
        entry = table.entry(t.params)
        reused = set(t.user_attrs.get("reused_folds", []))  # shown again, not trained again
        steps = [s for s in sorted(t.intermediate_values) if s // table.epochs not in reused]
        trained = sum(entry["folds"][s // table.epochs]["seconds"][s % table.epochs] for s in steps)
        trace = table.trace_seconds(entry)
        # Every trial built and traced (before issue 38); a promoted trial's continuation in a
        # new model pays a build and a trace.
        secs = entry["build_seconds"] + trained + (trace if reused and steps else 0.0)
        # A worker keeping models and steps (trainer.loop): a kept model pays no build, a kept
        # optimizer set-up no trace (the first epoch's recorded trace is taken off).
        model_hit, step_hit = kept.use(t.params) if steps else (False, False)
        kept_secs = (0.0 if model_hit else entry["build_seconds"]) + trained
        if step_hit and not reused:
            kept_secs -= trace
        elif not step_hit and reused and steps:
            kept_secs += trace
        complete = t.state == optuna.trial.TrialState.COMPLETE
        true = true_score(table, entry)
        if complete and abs(float(t.value) - true) > 1e-9:
            raise SystemExit(f"replay mismatch in trial {t.number}: {t.value} vs {true}")
        run.add(len(steps), kept_secs, float(t.value) if complete else None, true)
        rebuild.add(len(steps), secs, float(t.value) if complete else None, true)
    return [run, rebuild] if pruner == "default" else [run]


class KeptModels:
    """The replay's stand-in for a worker's kept models (``trainer.loop``: the last
    ``MAX_KEPT`` architectures, each with its last ``MAX_KEPT_PHASES`` optimizer set-ups).
    On these from-scratch grids the architecture is backbone and head width, and a set-up the
    optimizer and batch size (which sets the BatchNorm momentum), as ``architecture_key`` and
    ``phase_key`` have it; augmentation and learning rate change neither."""

    def __init__(self) -> None:
        from trainer.loop import MAX_KEPT, MAX_KEPT_PHASES

        self.models: dict[tuple, dict[tuple, None]] = {}
        self.max_models, self.max_phases = MAX_KEPT, MAX_KEPT_PHASES

    def use(self, params: dict) -> tuple[bool, bool]:
        """(model kept, optimizer set-up kept) for a trial of ``params``; then it is kept."""
        arch = (params["backbone"], params.get("head_width", 0))
        phase = (params["optimizer"], params.get("batch_size", 32))
        phases = self.models.pop(arch, None)
        model_hit = phases is not None
        phases = phases if phases is not None else {}
        step_hit = phases.pop(phase, "miss") is None
        phases[phase] = None
        while len(phases) > self.max_phases:
            phases.pop(next(iter(phases)))
        self.models[arch] = phases
        while len(self.models) > self.max_models:
            self.models.pop(next(iter(self.models)))
        return model_hit, step_hit and model_hit


# -- a hand-written Optuna loop ----------------------------------------------------------------


def run_optuna_loop(
    table: Table, seed: int, sampler_name: str, n_trials: int, startup: int | None = None
) -> Run:
    """A hand-written Optuna loop; ``startup`` replaces TPE's default 10 random start-up trials."""
    lo, hi = table.lr_range()
    if sampler_name == "tpe":
        extra = {} if startup is None else {"n_startup_trials": startup}
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed, **extra)
        name = "optuna-tpe" if startup is None else "optuna-tpe-eq"
    else:
        sampler, name = optuna.samplers.RandomSampler(seed=seed), "random"
    study = optuna.create_study(direction="maximize", sampler=sampler)
    run = Run(name, seed)
    start = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        values = {k: trial.suggest_categorical(k, v) for k, v in table.choices.items()}
        values["learning_rate"] = trial.suggest_float("learning_rate", lo, hi, log=True)
        entry = table.entry(values)
        fold_epochs, seconds, score = full_trial(table, entry)
        run.add(fold_epochs, seconds, score, score)
        return score

    study.optimize(objective, n_trials=n_trials)
    run.wall = time.perf_counter() - start
    return run


# -- KerasTuner --------------------------------------------------------------------------------


def fold_epoch_trial(
    entry: dict, table: Table, units: int, initial: int
) -> tuple[int, float, float]:
    """``units`` fold-epochs in order (fold 0's epochs, then fold 1's, ...; early stopping ends
    a fold), the first ``initial`` already trained: fold-epochs and seconds trained now, and the
    mean of the best accuracy of every fold reached so far."""
    trained, seconds, best, used = 0, 0.0, [], 0
    for f in range(table.folds):
        if used >= units:
            break
        accs, secs, _ = run_fold(entry, f, min(table.epochs, units - used), PATIENCE)
        for e in range(len(accs)):
            if used + e >= initial:
                trained += 1
                seconds += secs[e]
        used += table.epochs  # an early-stopped fold's unused epochs are not given to the next
        best.append(max(accs))
    return trained, seconds, float(np.mean(best))


def run_kerastuner(table: Table, seed: int, kind: str, budget: int, work: Path) -> Run:
    """KerasTuner 1.4 over the table, cross-validated in ``run_trial`` as its docs show.

    kind: ``hyperband`` (epochs are Hyperband's resource; every rung trains all folds),
    ``hyperband-fe`` (fold-epochs are the resource: a rung of r trains the first r fold-epochs,
    fold by fold, the wrapper an expert would write to prune across folds too), ``bayesian``
    (its defaults: 3 x dimensions random start-up trials) and ``bayesian-eq`` (STARTUP random
    start-up trials, like ours).
    """
    import keras_tuner as kt

    lo, hi = table.lr_range()
    hp = kt.HyperParameters()
    for name, values in table.choices.items():
        hp.Choice(name, values)
    hp.Float("learning_rate", lo, hi, sampling="log")
    objective = kt.Objective("cv_accuracy", direction="max")
    full = table.folds * table.epochs
    if kind.startswith("hyperband"):
        # Enough brackets to spend the budget; the curve is cut at the budget afterwards.
        oracle = kt.oracles.HyperbandOracle(
            objective=objective,
            max_epochs=full if kind == "hyperband-fe" else table.epochs,
            factor=3,
            hyperband_iterations=max(1, math.ceil(budget / (full * 2))),
            seed=seed,
            hyperparameters=hp,
        )
    else:
        oracle = kt.oracles.BayesianOptimizationOracle(
            objective=objective,
            max_trials=math.ceil(budget / (full * 0.6)),
            num_initial_points=STARTUP if kind == "bayesian-eq" else None,
            seed=seed,
            hyperparameters=hp,
        )
    run = Run(f"kt-{kind}", seed)

    class CrossValidated(kt.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            values = trial.hyperparameters.values
            entry = table.entry(values)
            initial = int(values.get("tuner/initial_epoch", 0))
            # Every trial is a new model; a Hyperband continuation reloads its checkpoint into
            # one, so it pays a build and, its first epoch not being the recorded one, a trace.
            seconds = entry["build_seconds"]
            if "tuner/trial_id" in values:
                seconds += table.trace_seconds(entry)
            if kind == "hyperband-fe":
                units = int(values.get("tuner/epochs", full))
                fold_epochs, secs, score = fold_epoch_trial(entry, table, units, initial)
                seconds += secs
            else:
                epochs = int(values.get("tuner/epochs", table.epochs))
                fold_epochs, best = 0, []
                for f in range(table.folds):
                    accs, secs_f, _ = run_fold(entry, f, epochs, PATIENCE)
                    fold_epochs += max(0, len(accs) - initial)
                    seconds += sum(secs_f[initial:])
                    best.append(max(accs))
                score = float(np.mean(best))
            run.add(fold_epochs, seconds, score, true_score(table, entry))
            if sum(run.fold_epochs) >= budget:
                raise kt.errors.FatalError("budget spent")  # ends the search
            return {"cv_accuracy": score}

    tuner = CrossValidated(
        oracle=oracle, directory=str(work / "kt"), project_name=f"{kind}-{seed}", overwrite=True
    )
    start = time.perf_counter()
    try:
        tuner.search(verbose=0)
    except kt.errors.FatalError:
        pass
    run.wall = time.perf_counter() - start
    return run


# -- the report ------------------------------------------------------------------------------

TABLE_ROLE = {
    False: "Table A: every pruner and sampler constant was chosen on this table (at seeds 10-59, "
    "bench/pruner_sweep.py); other seeds of it hold out only the sampler's luck.",
    True: "Table B: held out. No constant was chosen on it: other images (none of table A's and "
    "none of bench/end_to_end.py's held-out quarter), another resolution and fold count, and a "
    "grid of six knobs.",
}


def full_budget(table: Table, trials: int = 15) -> int:
    """The default compute budget: ``trials`` configurations trained in full."""
    return trials * table.folds * table.epochs


def capped(cost: float, cap: float) -> float:
    return cost if cost <= cap else math.inf


def median_iqr(values: list[float], digits: int = 3) -> str:
    """Median [IQR] over seeds; a seed that never got there counts as infinitely late ("n/r")."""
    v = np.asarray(values, float)
    missed = int(np.sum(~np.isfinite(v)))
    with np.errstate(all="ignore"):
        quartiles = np.percentile(v, [25, 50, 75])
    q1, q2, q3 = ("n/r" if not np.isfinite(q) else f"{q:.{digits}f}" for q in quartiles)
    tail = f" (not reached in {missed} of {len(v)} seeds)" if missed else ""
    return f"{q2} [{q1}, {q3}]{tail}"


def plot(runs: list[Run], budget: float, unit: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    end = budget if unit == "fold_epochs" else max(sum(r.seconds) for r in runs)
    xs = np.linspace(0, end, 200)
    for system in dict.fromkeys([*SYSTEMS, *(r.system for r in runs)]):
        mine = [r for r in runs if r.system == system]
        if not mine:
            continue
        ys = np.array([[r.best_at(x, unit) for x in xs] for r in mine])
        with np.errstate(all="ignore"):
            med = np.nanmedian(ys, axis=0)
            q1, q3 = np.nanpercentile(ys, 25, axis=0), np.nanpercentile(ys, 75, axis=0)
        (line,) = ax.plot(xs, med, label=system, lw=2 if system == "ours" else 1.2)
        ax.fill_between(xs, q1, q3, color=line.get_color(), alpha=0.12)
    ax.set_xlabel("fold-epochs trained" if unit == "fold_epochs" else "training seconds")
    ax.set_ylabel("CV accuracy of the reported best")
    ax.set_title(f"median and IQR over {len({r.seed for r in runs})} seeds")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    lows = [v for r in runs for v in r.true if math.isfinite(v)]
    ax.set_ylim(max(min(lows), np.percentile(lows, 40) - 0.05), max(lows) + 0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table", type=Path, default=ROOT / "docs" / "hpo_table.json")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="fold-epochs (default: 15 full trials of the table)",
    )
    p.add_argument("--n-trials", type=int, default=60, help="trials in the Optuna-based runs")
    p.add_argument(
        "--pruned-trials",
        type=int,
        default=200,
        help="trials in our runs with pruning: a pruned trial costs a fraction of a full one, so "
        "they get at least the compute of the --n-trials runs without pruning (the savings "
        "figure only counts compute up to the no-pruning run's total)",
    )
    p.add_argument(
        "--also-pruners",
        default="",
        help="comma-separated extra --pruner values to run through our CLI (e.g. halving,fold)",
    )
    p.add_argument(
        "--portfolio-without",
        default=None,
        metavar="DATASET",
        help="ours opens with the portfolio bench/portfolio.py chose with DATASET's table left "
        "out (docs/portfolio.json), not the shipped one",
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "search_efficiency.md")
    args = p.parse_args()
    without = args.portfolio_without
    extra = [x for x in args.also_pruners.split(",") if x]
    table = load_table(str(args.table))
    if args.budget is None:
        args.budget = full_budget(table)
    missing = math.prod(len(v) for v in table.grid.values()) - len(table.points)
    if missing > 0:
        raise SystemExit(f"{args.table} lacks {missing} grid points: finish bench/hpo_table.py")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scores = {k: true_score(table, e) for k, e in table.points.items()}
    optimum = max(v for v in scores.values() if math.isfinite(v))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_npz(table_data(table.setup), work / "data.npz")
        for seed in range(args.seeds):
            batch = [
                *run_ours(
                    table, args.table, seed, "default", args.pruned_trials, work, True, without
                ),
                run_ours(table, args.table, seed, "default", args.pruned_trials, work, False)[0],
                *run_ours(table, args.table, seed, "none", args.n_trials, work, True, without),
                run_optuna_loop(table, seed, "tpe", args.n_trials),
                run_optuna_loop(table, seed, "tpe", args.n_trials, startup=STARTUP),
                run_optuna_loop(table, seed, "random", args.n_trials),
                *(
                    run_kerastuner(table, seed, kind, args.budget, work)
                    for kind in ("hyperband", "hyperband-fe", "bayesian", "bayesian-eq")
                ),
                *(
                    r
                    for x in extra
                    for r in run_ours(table, args.table, seed, x, args.pruned_trials, work)
                ),
            ]
            runs += batch
            print(
                f"seed {seed}: "
                + ", ".join(f"{r.system} {r.best_at(args.budget):.3f}" for r in batch),
                flush=True,
            )
    write_report(args, table, runs, optimum, scores)


def rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_report(args, table: Table, runs: list[Run], optimum: float, scores: dict) -> None:
    systems = list(dict.fromkeys([*SYSTEMS, *(r.system for r in runs)]))
    by = {s: [r for r in runs if r.system == s] for s in systems}
    budget = args.budget
    seeds = sorted({r.seed for r in runs})
    lines = [
        "# Search efficiency and pruning savings (issue 7, items 1-2)",
        "",
        f"Command: `python bench/search_efficiency.py --seeds {args.seeds} --budget {budget} "
        f"--n-trials {args.n_trials} --pruned-trials {args.pruned_trials}"
        + (f" --also-pruners {args.also_pruners}" if args.also_pruners else "")
        + (f" --portfolio-without {args.portfolio_without}" if args.portfolio_without else "")
        + f" --table {rel(args.table)} --out {rel(args.out)}`"
        + f", on the table from `python bench/hpo_table.py "
        f"--images {table.setup['images']} --size {table.setup['size']} --folds {table.folds} "
        f"--epochs {table.epochs}"
        + (" --grid b --images-from other" if table.held_out else "")
        + f"` (`{rel(args.table)}`; {len(table.points)} configurations over "
        + ", ".join(table.knobs)
        + ").",
        "",
        f"Table built on: {table.setup['machine']}. Replays run on the same machine.",
        "",
        TABLE_ROLE[table.held_out],
        "",
        "How it works: every grid configuration was trained once by the project's trainer on "
        f"{table.setup['images']} real blood-cell images at {table.setup['size']} px, "
        f"{table.folds} folds x {table.epochs} epochs, recording each epoch's validation "
        "accuracy and seconds; every system then searches the same space and is shown exactly "
        "those numbers for the epochs it trains (see the docstrings of bench/hpo_table.py and "
        "bench/search_efficiency.py). Early stopping (patience 2) applies to every system. "
        f"Budget: {budget} fold-epochs (= {budget / (table.folds * table.epochs):.0f} "
        f"configurations trained in full). Grid optimum (full CV accuracy): {optimum:.3f}; "
        f"median configuration: {np.median([v for v in scores.values() if math.isfinite(v)]):.3f}.",
        "",
        (
            "Ours opens with the quick space's portfolio, as `search.run` does, where the grid "
            f"holds its points ({len(portfolio_points(table))} of "
            f"{len(SPACES['quick'].starting_points)} here; "
            + (
                "bench/portfolio.py chose it on other images, none of this table's"
                if table.held_out
                else "bench/portfolio.py chose it on tables that include some of this table's "
                "images"
            )
            + ")"
            if args.portfolio_without is None
            else "Ours opens with the portfolio bench/portfolio.py chose with the "
            f"{args.portfolio_without} table left out (docs/portfolio.json: chosen on the other "
            "kinds of images only), where the grid holds its points "
            f"({len(portfolio_points(table, args.portfolio_without))} of "
            f"{len(chosen_without(args.portfolio_without))} here), in that portfolio's order: "
            + "; ".join(
                f"{p['augment']}, batch {p['batch_size']}"
                for p in portfolio_points(table, args.portfolio_without)
            )
        )
        + "; ours-noportfolio is the same with `--no-portfolio`, the sampler's random start-up; "
        "ours-nopruning opens with the same portfolio.",
        "",
        "Seconds of ours: a worker keeps its last 4 models and their optimizer set-ups "
        "(trainer.loop), so a trial on a kept architecture (backbone, head width) pays no build "
        "and one on a kept set-up (also optimizer and batch size) no trace; the study's own trial "
        "order decides, with the recorded build and trace seconds. ours-rebuild is the same "
        "study with every trial paying both (the accounting before issue 38). KerasTuner builds "
        "and traces a model per trial, as it does.",
        "",
        f"## Best CV accuracy at equal compute ({budget} fold-epochs), {len(seeds)} seeds",
        "",
        "| system | median [IQR] | seeds reaching the optimum | trials run |",
        "|---|---|---:|---:|",
    ]
    for s, rs in by.items():
        vals = [r.best_at(budget) for r in rs]
        hits = sum(v >= optimum - 1e-9 for v in vals)
        n = [int(np.sum(np.cumsum(r.fold_epochs) <= budget)) for r in rs]
        lines.append(f"| {s} | {median_iqr(vals)} | {hits}/{len(rs)} | {np.median(n):.0f} |")
    summary = []
    lines += ["", "## Compute ours needs to reach each peer's best at the budget", ""]
    lines += [
        "Per seed: the fold-epochs (and training seconds) after which ours' reported best is at "
        "least as good as the peer's reported best after the whole budget, as a fraction of that "
        "budget (goal for KerasTuner: at most 0.5). Training seconds compare against the peer's "
        "seconds spent within the budget.",
        "",
        "| peer | peer's best at budget | fold-epoch fraction | seconds fraction | ours' best "
        "at the peer's seconds |",
        "|---|---|---|---|---|",
    ]
    ours = {r.seed: r for r in by["ours"]}
    for peer in systems[1:]:
        fracs, secs_fracs, finals, at_secs = [], [], [], []
        for r in by[peer]:
            target = r.best_at(budget)
            finals.append(target)
            fracs.append(ours[r.seed].cost_to_reach(target) / budget)
            cost, _ = r.curve("fold_epochs")
            inside = np.flatnonzero(cost <= budget)
            peer_secs = float(np.cumsum(r.seconds)[inside[-1]]) if len(inside) else math.nan
            secs_fracs.append(ours[r.seed].cost_to_reach(target, "seconds") / peer_secs)
            at_secs.append(ours[r.seed].best_at(peer_secs, "seconds"))
        lines.append(
            f"| {peer} | {median_iqr(finals)} | {median_iqr(fracs)} | {median_iqr(secs_fracs)} "
            f"| {median_iqr(at_secs)} |"
        )
        summary.append(
            f"ours reaches {peer}'s best-at-budget with {np.median(fracs):.2f}x its compute "
            f"(fold-epochs; {np.median(secs_fracs):.2f}x in seconds); at equal compute ours "
            f"{np.median([r.best_at(budget) for r in by['ours']]):.3f} vs "
            f"{np.median(finals):.3f}"
        )
    # Item 2: pruning savings to reach the same best configuration (within 1 point): per seed,
    # the configuration the no-pruning run ends with is the target for both runs.
    # The pruned run has more trials (--pruned-trials) but only the no-pruning run's total
    # compute counts: reaching the target later than that is "not reached".
    rows, ratios, global_p, global_n = [], [], [], []
    for r_p, r_n in zip(by["ours"], by["ours-nopruning"], strict=True):
        cap = float(sum(r_n.fold_epochs))
        target = r_n.best_at(math.inf) - 0.01
        a, b = capped(r_p.cost_to_reach(target), cap), r_n.cost_to_reach(target)
        ratios.append(a / b)
        rows.append(f"| {r_p.seed} | {target + 0.01:.3f} | {a:.0f} | {b:.0f} | {a / b:.2f} |")
        global_p.append(capped(r_p.cost_to_reach(optimum - 0.01), cap))
        global_n.append(r_n.cost_to_reach(optimum - 0.01))
    per_trial_p = [sum(r.fold_epochs) / len(r.fold_epochs) for r in by["ours"]]
    per_trial_n = [sum(r.fold_epochs) / len(r.fold_epochs) for r in by["ours-nopruning"]]
    saved = 1 - float(np.median(ratios))
    lines += [
        "",
        "## Pruning savings (item 2)",
        "",
        "Per seed: the best configuration the `--pruner none` run ends with (after "
        f"{args.n_trials} trials) is the target; the table gives the fold-epochs each run "
        "spent until its reported best was within 1 point of that target. Same sampler, "
        f"same seed; only the pruner differs. The pruned run may run {args.pruned_trials} "
        "trials, but only within the no-pruning run's total fold-epochs (beyond: inf).",
        "",
        "| seed | target (no-pruning final best) | default pruning | no pruning | ratio |",
        "|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Median ratio {np.median(ratios):.3f}: **{saved:.1%} of the fold-epochs saved** "
        f"(goal >= 40%). Fold-epochs per trial (median of the seeds' means): "
        f"{np.median(per_trial_p):.1f} with pruning, "
        f"{np.median(per_trial_n):.1f} without (a full trial is {table.folds * table.epochs}). "
        f"Within 1 point of the grid optimum ({optimum:.3f}): with pruning "
        f"{median_iqr(global_p, 0)} fold-epochs, without {median_iqr(global_n, 0)}.",
    ]
    summary.append(
        f"pruning: {np.median(ratios):.3f}x the fold-epochs of no pruning to reach the same best "
        f"configuration within 1 point ({saved:.1%} saved)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    png_s = args.out.with_name(args.out.stem + "_seconds.png")
    plot(runs, budget, "fold_epochs", png)
    plot(runs, budget, "seconds", png_s)
    wall = {s: np.median([r.wall for r in rs]) for s, rs in by.items()}
    lines += [
        "",
        "## Curves",
        "",
        f"![best CV accuracy vs fold-epochs]({png.name})",
        "",
        f"![best CV accuracy vs training seconds]({png_s.name})",
        "",
        "Replay wall time per run (search overhead only, training replayed), median: "
        + ", ".join(f"{s} {w:.1f}s" for s, w in wall.items())
        + ".",
        "",
        "## Summary lines",
        "",
        *[f"- {s}" for s in summary],
        "",
    ]
    text = "\n".join(lines).encode()
    atomic_write_bytes(args.out, text)
    for s in summary:
        print(s)


if __name__ == "__main__":
    main()
