"""Compare pruner variants on the replay table, in-process and fast (issue 7, item 2).

bench/search_efficiency.py runs our search through the real CLI (20-60 s per run); choosing a
default pruner needs many more seeds than that allows. This script replays the same table with
the same sampler (``search.policy.samplers.make_sampler``'s TPE), the same space (every knob but
the four of the grid fixed), the same step scheme and the same pruners (``search.policy.pruning``,
with the coordinator's ``act_on_screen``), in one process with an in-memory study, about 1 s per run. ``--check-cli SEED`` runs one seed both ways and fails
unless every trial matches (configuration, fold-epochs, reported value).

Per variant and seed it runs the pruned study (``--pruned-trials``) and the same sampler with no
pruning (``--n-trials``), and reports: the median best CV accuracy at the budget, how many seeds
reach the grid optimum, the pruned run's fold-epochs to come within 1 point of the no-pruning
run's final best as a fraction of the no-pruning run's (only up to the no-pruning run's total
compute; beyond it counts as not reached), and fold-epochs per trial. With ``--kt`` also the
fraction of the budget needed to reach KerasTuner Hyperband's / Bayesian's best at the budget
(KerasTuner runs are cached in --cache).

Everything chosen with this script was chosen on replay table A (docs/hpo_table.json) at
seeds 10-59. Other seeds of the same table hold out only the sampler's luck (the configurations
and their curves are the same), so the held-out figures are those on table B
(docs/hpo_table_b.json: other images, resolution, folds and a 240-point grid; pass it with
--table), which nothing was chosen on. Chosen on table A: the bottom-quarter
epoch rule and the first-fold fold test on the first, 3-fold table (docs/hpo_table_3fold.json,
pass it with --table), the fold test's mean gaps, TPE's 6 start-up trials, the screen of the first 3
trials and the 15-point gap inside folds (instead of a quantile cut) on the current 5-fold
table A. All 60 seeds:

    python bench/pruner_sweep.py --seeds 0-59 --kt [--variants previous,default,...]

Prints one line per variant and writes them to docs/pruner_sweep.md. ``--startup N[,N...]``
runs the default variant with TPE's start-up count set to each N instead (in the pruned and the
no-pruning study alike), the figure that count was chosen on; it writes --out and a JSON beside:

    python bench/pruner_sweep.py --seeds 10-59 --kt --startup 4,5,6,7,8,10 --out docs/tpe_startup.md
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import pickle
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import optuna
from common import ROOT, machine  # noqa: I001
from replay import Table, load_table, run_fold
from search_efficiency import (
    TABLE_ROLE,
    Run,
    capped,
    full_budget,
    rel,
    run_kerastuner,
    run_ours,
    space_file,
    true_score,
)

from search.atomic import atomic_write_bytes
from search.engine.trials import act_on_screen
from search.policy import pruning
from search.policy.samplers import make_sampler, tpe_startup_trials
from spaces.base import Space, StudySettings
from spaces.file import load_space_file


def made(name: str, table: Table) -> pruning.FoldEpochPruner | None:
    return pruning.make_pruner(
        name, epochs_per_fold=table.epochs, n_folds=table.folds, n_trials=60
    )  # as the CLI runs it: search_efficiency.py asks for 60 or more trials


def median_and_fold_test(min_folds: int, table: Table) -> pruning.FoldEpochPruner:
    """Median per epoch (after each fold's first half) + the 5-point/Wilcoxon fold test from fold
    ``min_folds`` (without the shrinking mean gaps, as the fold test was then)."""
    return pruning.FoldEpochPruner(
        epochs_per_fold=table.epochs,
        epoch_pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_min_trials=2),
        fold_test=pruning.FoldTest(min_folds=min_folds, mean_gaps=()),
        epoch_warmup=max(1, table.epochs // 2),
        n_folds=table.folds,
    )


def default_with(
    table: Table,
    *,
    screen: int | None = None,
    screen_max: int | None = None,
    epoch_gap: float | None = None,
    quarter: bool = False,
    **fold_test,
) -> pruning.FoldEpochPruner:
    """The default pruner with its screen, epoch gap and/or fold-test fields replaced, and with
    ``quarter`` the bottom-quarter cut per epoch that the default had until 2026-11-26 evening."""
    pruner = made("default", table)
    assert pruner is not None and pruner.fold_test is not None
    if screen is not None:
        pruner.screen = screen
    if screen_max is not None:
        pruner.screen_max = screen_max
    if epoch_gap is not None:
        pruner.epoch_gap = epoch_gap
    if quarter:
        pruner.epoch_pruner = optuna.pruners.PercentilePruner(
            75.0, n_startup_trials=3, n_min_trials=2
        )
    if fold_test:
        pruner.fold_test = dataclasses.replace(pruner.fold_test, **fold_test)
    return pruner


def halving_with(reduction_factor: int, table: Table) -> pruning.FoldEpochPruner:
    pruner = made("halving", table)
    assert pruner is not None
    pruner.epoch_pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=reduction_factor
    )
    return pruner


VARIANTS: dict[str, Callable[[Table], pruning.FoldEpochPruner | None]] = {
    # The default with a gap of N points inside folds, or screening N trials and promoting the
    # best at once (0: no screen), or letting trials beat the screen until N are screened.
    **{f"gap{n}": partial(default_with, epoch_gap=n / 100) for n in (10, 20)},
    **{f"screen{n}": partial(default_with, screen=n, screen_max=n) for n in (0, 2, 4)},
    "screen3": partial(default_with, screen_max=3),  # the default until 2026-11-26, late
    **{f"beat{n}": partial(default_with, screen_max=n) for n in (6, 8, 10)},
    "previous": partial(median_and_fold_test, 2),  # the default before 2026-11-26
    "median+fold": partial(median_and_fold_test, 1),
    # The default of 2026-11-26 morning: bottom quarter per epoch + the 5-point fold test.
    "5-point": partial(default_with, screen=0, epoch_gap=0, quarter=True, mean_gaps=()),
    # The default of 2026-11-26 afternoon (less its exact-repeat rule), and the quarter cut added
    # to the current default.
    "quarter": partial(default_with, screen_max=3, epoch_gap=0, quarter=True),
    "quarter+gap": partial(default_with, screen_max=3, quarter=True),
    # `halving` with successive halving keeping the top half / quarter per rung (it keeps a third).
    **{f"halving{n}": partial(halving_with, n) for n in (2, 4)},
    **{name: partial(made, name) for name in pruning.PRUNERS},
}


BREAKDOWN = ("screened", "promoted", "pruned", "below", "tie", "improvement", "hit")


def breakdown(run: Run, cost: float) -> dict[str, int] | None:
    """Where a pruned run's fold-epochs went up to its first trial at the target (the hit), which
    it reached after ``cost`` fold-epochs (``Run.cost_to_reach``).

    Completed trials before the hit are ``tie`` (reported exactly the best value so far: in the
    replay, a learning rate snapped to the incumbent's grid point), ``improvement`` (a new best
    below the target) or ``below`` (worse than the best so far: the fold test let them finish).
    """
    if not math.isfinite(cost):
        return None  # never reached: left out of the means
    out = dict.fromkeys(BREAKDOWN, 0)
    hit = int(np.searchsorted(np.cumsum(run.fold_epochs), cost - 1e-9))
    best = -math.inf
    for i, (kind, spent, value) in enumerate(
        zip(run.kinds, run.fold_epochs, run.reported, strict=True)
    ):
        if i == hit:
            out["hit"] += spent
            break
        if kind == "completed" and value is not None:
            kind = "tie" if value == best else "improvement" if value > best else "below"
        out[kind] += spent
        if value is not None:
            best = max(best, value)
    return out


def ten_seed_spread(ratios: list[float], rng: np.random.Generator) -> str:
    """5-95% range of the median of 10 seeds drawn from these (how far a 10-seed figure moves)."""
    draws = rng.choice(np.minimum(ratios, 1e9), size=(10_000, 10))  # 1e9: not reached
    medians = np.median(draws, axis=1)
    lo, hi = (f"{q:.2f}" if q < 1e9 else "inf" for q in np.quantile(medians, [0.05, 0.95]))
    return f"[{lo}, {hi}], P(<= 0.60) {np.mean(medians <= 0.60):.2f}"


def replay_study(
    table: Table,
    space: Space,
    seed: int,
    variant: str,
    n_trials: int,
    *,
    startup: int | None = None,
) -> Run:
    """``run_ours`` without the CLI: same sampler, space, step scheme and pruner decisions.

    ``startup``: TPE's start-up trials (None: the shipped rule at ``n_trials``)."""
    pruner = VARIANTS[variant](table)
    study = optuna.create_study(
        direction="maximize",
        sampler=make_sampler("tpe", seed, n_trials, n_startup_trials=startup),
        pruner=pruner or optuna.pruners.NopPruner(),
    )
    settings = StudySettings(
        epochs=table.epochs, weights="none", seed=seed, image_size=space.image_size
    )
    run = Run(variant, seed)
    epochs = table.epochs
    for _ in range(n_trials):
        trial = study.ask()
        cfg = space.sample(trial, settings)  # what the coordinator asks, in the same order
        entry = table.entry({k: getattr(cfg, k) for k in table.knobs})
        steps, seconds, scores, pruned = 0, entry["build_seconds"], [], False
        reused = 1 if pruning.PROMOTED_FROM in trial.user_attrs else 0  # its screened fold 0
        for fold in range(table.folds):
            accs, secs, _ = run_fold(entry, fold, epochs, cfg.patience)
            for epoch, acc in enumerate(accs):
                trial.report(acc, fold * epochs + epoch)
                if fold < reused:
                    continue  # re-used, as the coordinator does: reported, not trained again
                steps, seconds = steps + 1, seconds + secs[epoch]
                if pruner is not None and trial.should_prune():
                    pruned = True
                    break
            if pruned:
                break
            scores.append(max(accs))
            trial.set_user_attr("fold_scores", scores)
            if fold < reused:
                continue
            screen = pruner.screen_fold(study, trial, scores) if pruner is not None else None
            if screen is not None and act_on_screen(study, trial, screen):
                pruned = True
                break
            if pruner is not None and pruner.prune_fold(study, scores):
                pruned = True  # as the coordinator does; prune_fold never stops a last fold
                break
        if reused and steps:  # charged as run_ours does: the promoted trial is a new model
            seconds += table.trace_seconds(entry)
        true = true_score(table, entry)
        run.kinds.append(
            "promoted"
            if reused
            else "screened"
            if trial.user_attrs.get(pruning.SCREENED)
            else "pruned"
            if pruned
            else "completed"
        )
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            run.add(steps, seconds, None, true)
        else:
            value = float(np.mean(scores))
            study.tell(trial, value)
            run.add(steps, seconds, value, true)
    return run


def kerastuner_runs(table: Table, seed: int, budget: int, cache: Path) -> dict[str, Run]:
    digest = hashlib.sha256(json.dumps(table.points, sort_keys=True).encode()).hexdigest()[:12]
    path = cache / f"kt-{digest}-{seed}-{budget}.pkl"  # keyed by the table's contents too
    if path.exists():
        return pickle.loads(path.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            k: run_kerastuner(table, seed, k, budget, Path(tmp)) for k in ("hyperband", "bayesian")
        }
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(runs))
    return runs


def bench_space(table: Table) -> Space:
    """The space search_efficiency.py hands the CLI, read back as the CLI reads it."""
    with tempfile.TemporaryDirectory() as tmp:
        # The pruner alone: no portfolio (search_efficiency.py's ours opens with it).
        return load_space_file(space_file(table, Path(tmp), n_trials=1, portfolio=False))


def check_cli(table: Table, table_path: Path, seed: int, n_trials: int) -> None:
    from common import save_npz, table_data

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_npz(table_data(table.setup), work / "data.npz")
        cli = run_ours(table, table_path, seed, "default", n_trials, work, portfolio=False)[0]
    fast = replay_study(table, bench_space(table), seed, "default", n_trials)
    same = (cli.fold_epochs, cli.reported, cli.true) == (fast.fold_epochs, fast.reported, fast.true)
    if not same:
        raise SystemExit(f"seed {seed}: the in-process replay differs from the CLI run")
    print(f"seed {seed}: {n_trials} trials identical through the CLI and in-process")


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(x) for x in text.split(",")]


def counts_of(text: str) -> list[int]:
    """``--startup``'s list, e.g. ``4,6,8``: non-negative start-up counts."""
    try:
        counts = [int(x) for x in text.split(",") if x]
    except ValueError:
        counts = []
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"expected counts such as 4,6,8, got {text!r}")
    return counts


def summarise(
    label: str,
    runs: dict[int, Run],
    nopruning: dict[int, Run],
    kt: dict[int, dict[str, Run]],
    args: argparse.Namespace,
    optimum: float,
    rng: np.random.Generator,
) -> tuple[str, dict]:
    """One arm's line, and its figures per seed for the JSON."""
    best, ratios, per_trial, fracs = [], [], [], {"hyperband": [], "bayesian": []}
    spent: dict[str, list[int]] = {k: [] for k in BREAKDOWN}
    for s, run in runs.items():
        base = nopruning[s]
        best.append(run.best_at(args.budget))
        target = base.best_at(math.inf) - 0.01
        cost = run.cost_to_reach(target)
        reach = capped(cost, float(sum(base.fold_epochs)))
        ratios.append(reach / base.cost_to_reach(target))
        for kind, n in (breakdown(run, cost) or {}).items():
            spent[kind].append(n)
        per_trial.append(float(np.mean(run.fold_epochs)))
        for kind, peer in kt.get(s, {}).items():
            fracs[kind].append(run.cost_to_reach(peer.best_at(args.budget)) / args.budget)
    at_optimum = sum(b >= optimum - 1e-9 for b in best)
    line = (
        f"{label:12s} best@{args.budget} {np.median(best):.3f} "
        f"(optimum in {at_optimum}/{len(runs)}) | "
        f"pruned/no-pruning compute to the same best {np.median(ratios):.2f} "
        f"(not reached {sum(not math.isfinite(r) for r in ratios)}) | "
        f"fold-epochs per trial {np.mean(per_trial):.1f}"
    )
    if len(runs) >= 30:
        line += f" | median of 10 of these seeds: 5-95% {ten_seed_spread(ratios, rng)}"
    if kt:
        line += " | of KerasTuner's budget: " + ", ".join(
            f"{k} {np.median(v):.2f}" for k, v in fracs.items()
        )
    if args.breakdown:
        line += (
            f" | fold-epochs to the hit, mean of the {len(spent['hit'])} seeds that reach it: "
            + ", ".join(f"{k} {np.mean(v):.1f}" for k, v in spent.items())
        )

    def finite(values: list[float]) -> list[float | None]:
        return [v if math.isfinite(v) else None for v in values]  # None: not reached / none by then

    row = {
        "label": label,
        "seeds": list(runs),
        "best_at_budget": finite(best),
        "optimum_seeds": at_optimum,
        "pruned_over_no_pruning": finite(ratios),
        "fold_epochs_per_trial": float(np.mean(per_trial)),
        **({f"of_kerastuner_{k}": finite(v) for k, v in fracs.items()} if kt else {}),
    }
    return line, row


def command_line(args: argparse.Namespace, startup: list[int]) -> str:
    arms = f"--startup {','.join(map(str, startup))}" if startup else f"--variants {args.variants}"
    return (
        f"python bench/pruner_sweep.py --seeds {args.seeds} {arms}"
        f" --budget {args.budget} --n-trials {args.n_trials} --pruned-trials {args.pruned_trials}"
        + (" --kt" if args.kt else "")
        + (" --breakdown" if args.breakdown else "")
        + f" --table {rel(args.table)} --out {rel(args.out)}"
    )


def page_head(args: argparse.Namespace, table: Table, startup: list[int]) -> list[str]:
    common = [
        f"Command: `{command_line(args, startup)}` (in-process replay of our search; "
        "`--check-cli SEED` checks it against the CLI trial by trial).",
        "",
        TABLE_ROLE[table.held_out],
        "",
        f"Machine: {machine()}",  # ends with the date
        "",
    ]
    breakdown_text = (
        " The breakdown: mean fold-epochs per seed before the pruned run's first trial at "
        "the target (the hit): trials stopped by the screen, the promoted trial, other "
        "stopped trials, completed trials below the best so far, completed ties with the "
        "best so far, completed new bests below the target, the hit."
        if args.breakdown
        else ""
    )
    if startup:
        return [
            "# TPE's start-up trials on the replay table (issue 40, item 4)",
            "",
            *common,
            "Each line is the `default` pruner with TPE's random start-up trials "
            "(`make_sampler(..., n_startup_trials=N)`) set to N, in the pruned study "
            f"({args.pruned_trials} trials) and in the no-pruning study it is compared with "
            f"({args.n_trials} trials) alike. The shipped rule "
            "(`search.policy.samplers.tpe_startup_trials`) gives "
            f"{tpe_startup_trials(args.pruned_trials)} at --pruned-trials {args.pruned_trials} "
            f"({tpe_startup_trials(args.n_trials)} at --n-trials {args.n_trials}), so "
            f"`default, startup {tpe_startup_trials(args.pruned_trials)}` is the sampler as "
            "shipped. best@B: the median over seeds of the true CV accuracy of the pruned run's "
            "incumbent after B fold-epochs, and in how many seeds that is the table's optimum; "
            "pruned/no-pruning: the pruned run's fold-epochs to come within 1 point of the "
            "no-pruning run's final best over the no-pruning run's (each line's own no-pruning "
            "run, at the same start-up count: this column does not compare across lines); of "
            "KerasTuner's budget: the pruned run's fold-epochs to reach KerasTuner Hyperband's / "
            "Bayesian's best at B, over B (median over seeds; the same KerasTuner runs for every "
            "line). The 5-95% range is that of the median of 10 seeds drawn from these (10,000 "
            "draws). A JSON beside this page holds the figures per seed." + breakdown_text,
            "",
        ]
    return [
        "# Pruner variants on the replay table (issue 7, item 2)",
        "",
        *common,
        "Variants: `previous` = median per epoch + fold test from the second fold (the default "
        "before 2026-11-26); `median+fold` = the same with the fold test from the first fold; "
        "`5-point` = bottom quarter per epoch + the fold test without its shrinking mean "
        "gaps, no screen (the default from 2026-11-26 until they came); `screenN` = the default "
        "screening N trials and promoting the best at once (`screen0`: none; `screen3`: the "
        "default until 2026-11-26, late); `beatN` = the default's screen of 3 in which later "
        "trials may beat the screen until N are screened (the default: 4); `gapN` = the default stopping a trial N points "
        "behind the best trial inside a fold (15 in the default); `quarter` = the bottom quarter "
        "of the finished trials per epoch instead of the gap (the default of 2026-11-26 "
        "afternoon, less its exact-repeat rule), `quarter+gap` = both; `halvingN` = `halving` "
        "keeping the top 1/N per rung (it keeps 1/3); the others are `--pruner` values as they "
        "are now. The 5-95% range is that of the median of 10 seeds drawn from these (10,000 "
        "draws): how far a 10-seed figure such as the published one moves by the luck of its "
        "seeds." + breakdown_text,
        "",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table", type=Path, default=ROOT / "docs" / "hpo_table.json")
    p.add_argument("--seeds", default="10-59", help="a range 10-59 or a list 1,2,3")
    p.add_argument(
        "--variants",
        default="previous,median+fold,5-point,quarter,quarter+gap,screen0,screen2,screen4,gap10,"
        "gap20,screen3,beat6,beat8,beat10,default,halving,halving2,halving4,fold",
    )
    p.add_argument(
        "--startup",
        type=counts_of,
        default=[],
        metavar="N[,N...]",
        help="instead of --variants: the default with TPE's start-up trials set to each N",
    )
    p.add_argument("--budget", type=int, default=None, help="default: 15 full trials")
    p.add_argument("--n-trials", type=int, default=60)
    p.add_argument("--pruned-trials", type=int, default=200)
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also where each pruned run's fold-epochs went before it reached the target",
    )
    p.add_argument("--kt", action="store_true", help="also the fractions of KerasTuner's budget")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pruner_sweep")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "pruner_sweep.md")
    p.add_argument("--check-cli", type=int, metavar="SEED", help="compare with the CLI, then exit")
    args = p.parse_args()
    startup: list[int] = args.startup
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = load_table(str(args.table))
    if args.budget is None:
        args.budget = full_budget(table)
    if args.check_cli is not None:
        check_cli(table, args.table, args.check_cli, args.n_trials)
        return
    # (label, variant, TPE's start-up trials; None: the shipped rule)
    arms: list[tuple[str, str, int | None]] = [
        (f"default, startup {n}", "default", n) for n in startup
    ]
    if not startup:
        variants = [v for v in args.variants.split(",") if v]
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
        arms = [(v, v, None) for v in variants]
    seeds = seeds_of(args.seeds)
    optimum = max(s for e in table.points.values() if math.isfinite(s := true_score(table, e)))
    space = bench_space(table)
    nopruning: dict[int | None, dict[int, Run]] = {}  # per start-up count, per seed
    kt = {s: kerastuner_runs(table, s, args.budget, args.cache) for s in seeds} if args.kt else {}
    head = f"{len(seeds)} seeds ({args.seeds}); fractions are medians, inf = not reached"
    print(head)
    lines = [*page_head(args, table, startup), head + ":", ""]
    rng = np.random.default_rng(0)
    rows = []
    for label, variant, n in arms:
        if n not in nopruning:
            nopruning[n] = {
                s: replay_study(table, space, s, "none", args.n_trials, startup=n) for s in seeds
            }
        runs = {
            s: replay_study(table, space, s, variant, args.pruned_trials, startup=n) for s in seeds
        }
        line, row = summarise(label, runs, nopruning[n], kt, args, optimum, rng)
        print(line, flush=True)
        lines.append(f"- {line}")
        rows.append({"variant": variant, "startup": n, **row})
    atomic_write_bytes(args.out, ("\n".join(lines) + "\n").encode())
    if startup:
        result = {
            "command": command_line(args, startup),
            "machine": machine(),
            "budget": args.budget,
            "arms": rows,
        }
        atomic_write_bytes(args.out.with_suffix(".json"), json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
