"""The paired check ``--final-augment auto`` runs before a ``--budget`` final model
(``search.policy.final``), on the dev splits of data of two kinds: does it take ``robust`` where
robust buys robustness (blood cells) and is the verdict sound on data with an up (digits)?

    python bench/final_check.py [--datasets bloodcells,digits] [--levels none,light,moderate]
                                [--candidate-epochs N]

For each dataset and seed: the training part of ``bench/end_to_end.py``'s dev split under holdout
seed ``--seeds`` (two thirds of the images outside that seed's quarter; seed 1's part holds 395
images of the seed-0 quarter: docs/fresh_split.md) resized to the quick space's 64 px, 3 stratified folds (seed 0),
the quick space's starting point under each trial level, the data's symmetry and colour as
``--symmetry auto --colour auto`` reads them, and the check exactly as ``search.engine.finish``
runs it on fold 0 (``check_epochs`` of the quick space's 4: 8 epochs; robust gets
``OTHER_AUGMENT_EPOCH_FACTOR`` x as many, or ``--candidate-epochs``: 8 regenerates the figure that
factor was chosen on here). Rows are merged into docs/final_check.json by (data, split, level,
the level's and robust's epochs); docs/final_check.md is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import time

from common import ROOT, machine
from end_to_end import load_split

from search.data.images import resize_all
from search.data.invariance import measure
from search.engine.finish import run_check
from search.policy.final import check_epochs, check_epochs_of
from search.policy.traits import decide
from spaces import SPACES
from trainer.config import TrialConfig
from trainer.folds import make_folds
from trainer.records import Dataset


def starting_config(level: str, symmetry: str, colour: str) -> TrialConfig:
    space = SPACES["quick"]
    point = dict(space.starting_points[0])
    point.pop("backbone")
    point["augment"] = level
    return TrialConfig(
        backbone="small_cnn",
        image_size=space.image_size,
        epochs=space.epochs,
        patience=space.patience,
        symmetry=symmetry,
        colour=colour,
        **point,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="bloodcells,digits")
    parser.add_argument("--levels", default="none,light,moderate")
    parser.add_argument("--seeds", default="0,1", help="dev splits (bench/end_to_end.py --dev)")
    parser.add_argument(
        "--candidate-epochs", type=int, help="robust's epochs (default: as the final model's)"
    )
    parser.add_argument("--page", action="store_true", help="rewrite the page from the JSON")
    args = parser.parse_args()
    if args.page:
        write_page({"rows": recorded_rows()})
        return
    rows = []
    space = SPACES["quick"]
    epochs = check_epochs(space.epochs)
    for name, seed in [
        (n, int(s)) for n in args.datasets.split(",") for s in args.seeds.split(",")
    ]:
        train, _, split = load_split(dev=True, seed=seed, dataset=name)
        data = Dataset(resize_all(train.images, space.image_size), train.labels, train.class_names)
        traits = decide("auto", "auto", lambda d=data: measure(d.images, d.labels, seed=0))
        fold = make_folds(data.labels, space.folds, 0)[0]
        for level in args.levels.split(","):
            start = time.perf_counter()
            config = starting_config(level, traits.symmetry, traits.colour)
            check = run_check(config, data, fold, epochs, args.candidate_epochs)
            row = {
                "dataset": name,
                "split": split,
                "symmetry": traits.symmetry,
                "colour": traits.colour,
                "level": level,
                **check.as_dict(),
                "wall_seconds": round(time.perf_counter() - start, 1),
                "machine": machine(),
            }
            print(json.dumps(row))
            rows.append(row)
    new = {_key(r) for r in rows}
    out = {"rows": [r for r in recorded_rows() if _key(r) not in new] + rows}
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    write_page(out)


def recorded_rows() -> list[dict]:
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    # Rows of runs before rows carried their machine share the file's one machine line.
    shared = recorded.get("machine") or "machine not recorded"
    return [{"machine": shared, **r} for r in recorded["rows"]]


def _candidate_epochs(row: dict) -> int:
    # Rows written before --candidate-epochs existed gave robust the shipped factor.
    return row.get("candidate_epochs") or check_epochs_of(row["epochs"])


def _key(row: dict) -> tuple:
    return row["dataset"], row["split"], row["level"], row["epochs"], _candidate_epochs(row)


def write_page(out: dict) -> None:
    rows = sorted(out["rows"], key=lambda r: (r["dataset"], -_candidate_epochs(r), r["split"]))
    lines = [
        "# The final model's paired check on dev splits",
        "",
        "`python bench/final_check.py` ("
        + "; ".join(sorted({r["machine"] for r in rows}))
        + "). What `--final-augment auto` "
        "decides before a `--budget` final model: the quick space's starting point trained on "
        "fold 0 of the dev split under the trial's level (8 epochs) and under robust (as "
        "shipped 16: the final model gives another level twice the epochs too; rows with 8 "
        "are the equal-epochs comparison that factor was chosen on, `--candidate-epochs 8`), "
        "scored on fold 0's held-back images clean and under the six corruptions (as the data's "
        "symmetry and colour allow). Robust is taken when its mean per-image score (clean and "
        "corrupted equally) is ahead by more than one standard error. Dev seed 2 is "
        "`bench/end_to_end.py --dev` under holdout seed 1: it keeps the seed-1 quarter out, not "
        "the seed-0 one, so 395 of the images it trains and checks on lie in the seed-0 quarter "
        "([fresh_split.md](fresh_split.md)).",
        "",
        "| data | dev seed | symmetry / colour | trial level | its clean / corrupted | robust "
        "epochs | robust clean / corrupted | gain (se) | taken | s |",
        "|---|---:|---|---|---|---:|---|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['split'].split('seed ')[1][0]} | {r['symmetry']} / {r['colour']} | "
            f"{r['level']} | "
            f"{r['searched_clean']:.3f} / {r['searched_corrupted']:.3f} | "
            f"{_candidate_epochs(r)} | {r['candidate_clean']:.3f} / {r['candidate_corrupted']:.3f} | "
            f"{r['gain']:+.3f} ({r['standard_error']:.3f}) | {r['taken']} | {r['wall_seconds']} |"
        )
    (ROOT / "docs" / "final_check.md").write_text("\n".join(lines) + "\n")


RESULTS = ROOT / "docs" / "final_check.json"


if __name__ == "__main__":
    main()
