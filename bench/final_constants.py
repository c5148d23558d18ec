"""The final recipe's constants on inner splits: each one moved off its shipped value, alone.

``search.policy.budget.FILL_EPOCH_FACTOR`` and ``OTHER_AUGMENT_EPOCH_FACTOR`` (together: how many
epochs a final model under ``robust`` gets, at most 12 x 2 x the search's 4 = 96 on the quick
space), ``search.policy.final.TAIL_SHARE`` (the light tail) and ``PROGRESSIVE_SHARE`` (epochs at
the search's 64 px before the full size) were chosen on splits that never touch
``bench/end_to_end.py``'s held-out quarter (seed 0). This regenerates the figures: the quick
space's first starting point (small CNN, AdamW 2e-3, batch 32) trained as ``search.run``'s final
model is (``robust``, cosine decay, the tail, progressive from the search's size, the data's
test-time views; also scored without them), then again with one constant moved, on inner
splits: a third of the non-held-out images held back (``--splits``: their seeds; split 1 is
``bench/end_to_end.py --dev``'s), trained on the rest. Scored clean, under the six corruptions
(mean) and composed pairs, as ``bench/end_to_end.py`` scores. As in ``search.run``'s export, a
calibration slice is held back from training and calibrates the model with its views. The
recipe is trained uncapped, as a budget that affords its epochs trains it; under a tighter
``--budget`` the deadline re-plans fewer.

    python bench/final_constants.py [--splits 1,2] [--variants shipped,epochs_half,...]

Writes docs/final_constants.json (rows merged by split and variant) and docs/final_constants.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import datasets
import numpy as np
from common import ROOT, machine, stratified_split  # noqa: I001
from end_to_end import score
from end_to_end_page import BLOOD

from search.atomic import atomic_write_bytes
from search.data.images import resize_all
from search.data.invariance import measure
from search.policy.budget import FILL_EPOCH_FACTOR, OTHER_AUGMENT_EPOCH_FACTOR
from search.policy.final import PROGRESSIVE_SHARE, TAIL_LEVEL, TAIL_SHARE
from search.policy.traits import decide
from spaces import SPACES
from trainer import calibrate
from trainer.config import TrialConfig
from trainer.final import Progressive, Tail, cosine_schedule, fit_all
from trainer.trust import calibration_slice
from trainer.views import views_for, with_views

RESULTS = ROOT / "docs" / "final_constants.json"
PAGE = ROOT / "docs" / "final_constants.md"
SPACE = SPACES["quick"]
POINT = dict(SPACE.starting_points[0])

# name: (what it moves, augment, epochs as a share of the recipe's, tail share, progressive)
VARIANTS = {
    "shipped": ("as shipped", "robust", 1.0, TAIL_SHARE, PROGRESSIVE_SHARE),
    "epochs_half": ("FILL_EPOCH_FACTOR x OTHER_AUGMENT_EPOCH_FACTOR halved", "robust", 0.5,
                    TAIL_SHARE, PROGRESSIVE_SHARE),
    "epochs_1.5": ("FILL_EPOCH_FACTOR x OTHER_AUGMENT_EPOCH_FACTOR x 1.5", "robust", 1.5,
                   TAIL_SHARE, PROGRESSIVE_SHARE),
    "no_tail": ("TAIL_SHARE 0", "robust", 1.0, 0.0, PROGRESSIVE_SHARE),
    "tail_third": ("TAIL_SHARE 1/3", "robust", 1.0, 1 / 3, PROGRESSIVE_SHARE),
    "no_progressive": ("PROGRESSIVE_SHARE 0", "robust", 1.0, TAIL_SHARE, 0.0),
    "light_half": ("light, half the epochs (OTHER_AUGMENT_EPOCH_FACTOR's comparison)", "light",
                   0.5, 0.0, PROGRESSIVE_SHARE),
    "light": ("light, the shipped epochs", "light", 1.0, 0.0, PROGRESSIVE_SHARE),
}  # fmt: skip
# Scored from the shipped model without its test-time views (the default views' evidence).
NO_VIEWS = "no_views"


def recipe_epochs(augment: str) -> int:
    """The final model's epochs at most, as search.policy.budget caps them: FILL_EPOCH_FACTOR x
    the search's epochs, x OTHER_AUGMENT_EPOCH_FACTOR under another level than the trial's."""
    factor = OTHER_AUGMENT_EPOCH_FACTOR if augment != POINT["augment"] else 1.0
    return math.ceil(factor * FILL_EPOCH_FACTOR * SPACE.epochs)


def inner_split(seed: int, dataset: str):
    """(train, test): the images outside the held-out quarter (seed 0), a third of them held back
    (stratified, ``seed``)."""
    data = datasets.load(dataset)
    rest, _ = stratified_split(data.labels, 0.25, 0)
    train, test = stratified_split(data.labels[rest], 1 / 3, seed)
    return data.subset(rest[train]), data.subset(rest[test])


def run(
    variant: str, train, test, symmetry: str, colour: str, split: int, scale: float = 1.0
) -> list[dict]:
    """The variant's row (and, for ``shipped``, the same model's row without views)."""
    what, augment, share, tail_share, progressive_share = VARIANTS[variant]
    full = max(int(train.images.shape[1]), SPACE.image_size)  # search.policy.final's final size
    config = TrialConfig(
        **(POINT | {"augment": augment}),
        image_size=full,
        epochs=SPACE.epochs,
        symmetry=symmetry,
        colour=colour,
    )
    epochs = max(2, round(scale * share * recipe_epochs(augment)))
    held = calibration_slice(train.labels, config.seed)
    index = np.setdiff1d(np.arange(len(train)), held)
    start = time.perf_counter()
    result = fit_all(
        config,
        train,
        epochs,
        lr_schedule=cosine_schedule(config, epochs),
        tail=Tail(TAIL_LEVEL, tail_share) if tail_share > 0 and augment != TAIL_LEVEL else None,
        progressive=(
            Progressive(SPACE.image_size, progressive_share)
            if progressive_share > 0 and SPACE.image_size < full
            else None
        ),
        index=index,
    )
    seconds = time.perf_counter() - start
    rows = []
    # Without views first: a temperature never changes a single view's argmax.
    for name, views in ([(NO_VIEWS, "none")] if variant == "shipped" else []) + [
        (variant, views_for(augment, symmetry))
    ]:
        model = with_views(result.model, views)
        if name != NO_VIEWS and len(held):
            calibrate.fit(model, views, train.images, train.labels, index, held, seed=config.seed)
        scores = score(model, test)
        rows.append(
            {
                "split": split,
                "variant": name,
                "moves": what if name == variant else "no test-time views (the same model)",
                "augment": augment,
                "epochs": epochs,
                "tail_share": tail_share,
                "progressive_share": progressive_share,
                "views": views,
                "symmetry": symmetry,
                "colour": colour,
                "size": full,
                "train_seconds": round(seconds, 1),
                **{k: round(v, 4) for k, v in scores.items()},
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": machine(),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--splits", default="1,2", help="inner splits' seeds (1: --dev's)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--dataset", default=BLOOD, choices=list(datasets.LOADERS))
    p.add_argument("--page", action="store_true", help="rewrite the page from the JSON")
    p.add_argument("--no-doc", action="store_true", help="print the rows, write nothing")
    p.add_argument("--scale", type=float, default=1.0, help="x every epoch count (smoke runs)")
    args = p.parse_args()
    if args.page:
        write_page(load())
        return
    if args.scale != 1.0 and not args.no_doc:
        raise SystemExit("--scale is for smoke runs: pass --no-doc too")
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    for split in (int(s) for s in args.splits.split(",")):
        train, test = inner_split(split, args.dataset)
        small = resize_all(train.images, SPACE.image_size)  # what search.run measures on
        labels = train.labels
        traits = decide("auto", "auto", lambda s=small, y=labels: measure(s, y, seed=0))
        for variant in variants:
            new = run(variant, train, test, traits.symmetry, traits.colour, split, args.scale)
            for row in new:
                row["dataset"] = args.dataset
                print(json.dumps(row), flush=True)
            if args.no_doc:
                continue
            out = load()  # re-read: another run may have merged rows meanwhile
            done = {(args.dataset, split, row["variant"]) for row in new}
            out["rows"] = [
                r for r in out["rows"] if (r["dataset"], r["split"], r["variant"]) not in done
            ] + new
            atomic_write_bytes(RESULTS, (json.dumps(out, indent=1) + "\n").encode())
            write_page(out)


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}


def write_page(out: dict) -> None:
    rows = out["rows"]
    lines = [
        "# The final recipe's constants on inner splits",
        "",
        "`python bench/final_constants.py`: the quick space's first starting point trained as "
        "`search.run`'s final model is, then with one constant moved. The recipe as shipped: "
        f"{recipe_epochs('robust')} epochs under robust (FILL_EPOCH_FACTOR {FILL_EPOCH_FACTOR} x "
        f"OTHER_AUGMENT_EPOCH_FACTOR {OTHER_AUGMENT_EPOCH_FACTOR:g} x the quick space's "
        f"{SPACE.epochs}, the most a budget gives it), its last {TAIL_SHARE:.3g} {TAIL_LEVEL}, its "
        f"first {PROGRESSIVE_SHARE:g} at the search's {SPACE.image_size} px when the final size "
        "is larger, a calibration slice held back, the data's test-time views. Each split holds "
        "back a third of the images outside `bench/end_to_end.py`'s held-out quarter (seed 0) "
        "and trains on the rest; the quarter is never read. Each row names its machine "
        "(seconds compare within one machine and hour only).",
        "",
        "| data | split | variant | moves | size | epochs | views | clean | corrupted | pairs | "
        "train s | ran |",
        "|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    order = {v: i for i, v in enumerate([*VARIANTS, NO_VIEWS])}
    for r in sorted(rows, key=lambda r: (r["dataset"], r["split"], order.get(r["variant"], 99))):
        lines.append(
            f"| {r['dataset']} | {r['split']} | {r['variant']} | {r['moves']} | {r['size']} | "
            f"{r['epochs']} | {r['views']} | {r['clean']:.3f} | {r['corrupted']:.3f} | "
            f"{r['pairs']:.3f} | {r['train_seconds']:.0f} | {r['date']} |"
        )
    lines += [
        "",
        "Against `shipped` on the same splits, mean change clean / corrupted (splits both have):",
        "",
    ]
    at = {(r["dataset"], r["variant"], r["split"]): r for r in rows}
    for dataset, variant in sorted(
        {(r["dataset"], r["variant"]) for r in rows}, key=lambda k: (k[0], order.get(k[1], 99))
    ):
        splits = sorted(
            s for d, v, s in at if (d, v) == (dataset, variant) and (d, "shipped", s) in at
        )
        if variant == "shipped" or not splits:
            continue

        def change(key: str, dataset=dataset, variant=variant, splits=splits) -> float:
            return statistics.mean(
                at[(dataset, variant, s)][key] - at[(dataset, "shipped", s)][key] for s in splits
            )

        lines.append(
            f"- {dataset} {variant}: {change('clean'):+.3f} / {change('corrupted'):+.3f} "
            f"(splits {', '.join(map(str, splits))})"
        )
    machines = sorted({r.get("machine", "") for r in rows})
    lines += ["", "Machines: " + "; ".join(machines), ""]
    atomic_write_bytes(PAGE, "\n".join(lines).encode())


if __name__ == "__main__":
    main()
