"""Is there a fresh held-out split left in the real blood-cell file? (issue 40, item 1)

Every benchmark draws its images from ``../shared/data/bloodcells_96.npz`` with the seeded rules
of ``bench/common.py``. This recomputes, image by image, which of them each earlier use touched:
the replay tables A (chose the pruner's constants) and B, bench/end_to_end.py's quarters (seed 0
scored six times with code changes between; seed 1 once) and its ``--dev`` split (chose the final
recipe's constants), bench/final_check.py's second dev split, the development quarters of bench/trust.py (seed 36) and bench/deploy.py
(seed 39), and the whole-file uses (bench/cleaning.py's thresholds, bench/traits.py's). A fresh
split must avoid every image that chose a constant or was looked at while the code changed. No
training: index arithmetic only.

    python bench/fresh_split.py   # -> docs/fresh_split.md, docs/fresh_split.json
"""

from __future__ import annotations

import json

import numpy as np
from common import ROOT, real_subset, stratified_split, subset_index

from search.atomic import atomic_write_bytes


def uses(labels: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
    """Each earlier use: the positions it read and what it did with them."""
    n = len(labels)
    every = np.arange(n)
    rest0, q0 = stratified_split(labels, 0.25, 0)
    inner_rest, inner_held = stratified_split(labels[rest0], 1 / 3, 1)
    table_a = subset_index(labels, 900, 0)
    setup = json.loads((ROOT / "docs" / "hpo_table_b.json").read_text())["setup"]
    free = np.setdiff1d(rest0, table_a)
    table_b = free[subset_index(labels[free], int(setup["images"]), 1)]
    return {
        "end_to_end quarter, seed 0": (q0, "scored 6 times with code changes between"),
        "end_to_end --dev split (seed 1)": (
            np.union1d(rest0[inner_rest], rest0[inner_held]),
            "chose FILL_EPOCH_FACTOR, TAIL_SHARE, PROGRESSIVE_SHARE, OTHER_AUGMENT_EPOCH_FACTOR",
        ),
        "end_to_end quarter, seed 1": (stratified_split(labels, 0.25, 1)[1], "scored once"),
        # final_check's second dev split is end_to_end's --dev rule under holdout seed 1: it
        # keeps the seed-1 quarter out, not the seed-0 one; the check reads its training part.
        "final_check dev split (seed 2)": (
            (rest1 := stratified_split(labels, 0.25, 1)[0])[
                stratified_split(labels[rest1], 1 / 3, 2)[0]
            ],
            "chose the paired check's candidate epochs (OTHER_AUGMENT_EPOCH_FACTOR)",
        ),
        "replay table A": (table_a, "chose the pruner's constants"),
        "replay table B": (table_b, "held out from the pruner's constants; inside the --dev split"),
        "trust quarter, seed 36": (stratified_split(labels, 0.25, 36)[1], "development"),
        "deploy quarter, seed 39": (stratified_split(labels, 0.25, 39)[1], "development"),
        "bench/cleaning.py, bench/traits.py": (every, "chose cleaning and traits thresholds"),
    }


def main() -> None:
    data = real_subset()
    labels = data.labels
    used = uses(labels)
    q0 = used["end_to_end quarter, seed 0"][0]
    table_a = used["replay table A"][0]
    choosing = (
        "end_to_end --dev split (seed 1)",
        "final_check dev split (seed 2)",
        "replay table A",
    )
    chose = np.unique(np.concatenate([used[k][0] for k in choosing]))
    steered = np.union1d(chose, q0)
    never = np.setdiff1d(np.arange(len(labels)), steered)
    rows = [
        {
            "use": name,
            "images": int(len(index)),
            "in_seed0_quarter": int(len(np.intersect1d(index, q0))),
            "in_table_a": int(len(np.intersect1d(index, table_a))),
            "what": what,
        }
        for name, (index, what) in used.items()
    ]
    result = {
        "command": "python bench/fresh_split.py",
        "images": int(len(labels)),
        "rows": rows,
        "chose_a_constant_of_the_model": int(len(chose)),
        "chose_or_steered": int(len(steered)),
        "untouched_by_model_choices": int(len(never)),
        "seed0_quarter_outside_table_a": int(len(np.setdiff1d(q0, table_a))),
    }
    lines = [
        "# A fresh held-out split of the real blood cells: what is left",
        "",
        f"`{result['command']}` (index arithmetic on the {result['images']} images of "
        "`bloodcells_96.npz`, the seeded rules of `bench/common.py`; no training).",
        "",
        "| earlier use | images | in the seed-0 quarter | in replay table A | what it did |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['use']} | {r['images']} | {r['in_seed0_quarter']} | {r['in_table_a']} | "
            f"{r['what']} |"
        )
    lines += [
        "",
        f"Images that chose a constant of the model (the two dev splits and table A): "
        f"{result['chose_a_constant_of_the_model']}. With the seed-0 quarter, which steered "
        f"development: {result['chose_or_steered']} of {result['images']}; "
        f"**{result['untouched_by_model_choices']} images are left** for a split that neither "
        "chose a constant nor steered a change, and every image also set the cleaning and "
        "traits thresholds (weakly coupled to the model's accuracy). The least-touched 800-image "
        f"set is the seed-0 quarter less table A ({result['seed0_quarter_outside_table_a']} "
        "images), which was looked at six times.",
        "",
        "So issue 40's fresh split, scored once, cannot be drawn from this file: it needs real "
        "blood-cell images no run here has read (the rest of the PBC set, or BloodMNIST's test "
        "split, which this machine cannot download). The seed-0 figures stay labelled as a "
        "development quarter.",
        "",
    ]
    atomic_write_bytes(ROOT / "docs" / "fresh_split.md", "\n".join(lines).encode())
    atomic_write_bytes(ROOT / "docs" / "fresh_split.json", json.dumps(result, indent=1).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
