"""The cleaning defaults measured on other kinds of images (``bench/cleaning.py --dataset NAME``).

``bench/cleaning.py`` measures the detectors on the real blood-cell file and writes
docs/cleaning.md. With ``--dataset digits`` (``bench/datasets.py``) the same injected dirt and the
same measurement run on that data set instead; its figures are kept in docs/cleaning.json (one
entry per data set) and shown in one section of the page, "Other kinds of images", which every
run of the bench writes again from that file (so a blood-cell run keeps it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_NAME = "cleaning.json"
HEADING = "## Other kinds of images"
NEXT = "## Caveats"  # the section goes right before this heading of the page


def score_record(sc: Any) -> dict[str, Any]:
    """A ``cleaning.Score`` as JSON."""
    return {
        "name": sc.name,
        "expected": sc.expected,
        "tp": sc.tp,
        "fp": sc.fp,
        "precision": sc.precision,
        "recall": sc.recall,
    }


def summary(
    *,
    description: str,
    n_real: int,
    dirty: Any,
    outlier_scores: np.ndarray,
    scores: list[Any],
    others: list[tuple[int, list[Any]]],
    seed: int,
    near_sweep: list[tuple[int, float, int, Any]],
    options: Any,
    facts: dict[str, Any],
    bench_seconds: float,
) -> dict[str, Any]:
    """Everything the section shows about one data set, as plain JSON."""
    from search.cleaning import dirt as D

    real = outlier_scores[dirty.indices(D.CLEAN)]
    real = np.sort(real[np.isfinite(real)])
    injected = np.sort(outlier_scores[dirty.indices(*D.OUTLIER_KINDS)])
    return {
        "description": description,
        "images": int(len(dirty.kind)),
        "real_images": n_real,
        "command": facts["command"],
        "date": facts["date"],
        "machine": facts["machine"],
        "clean_seconds": facts["seconds"],
        "bench_seconds": bench_seconds,
        "mislabel_model_accuracy": facts["accuracy"],
        "real_exact_groups": facts["real_exact_groups"],
        "by_seed": {
            str(s): [score_record(sc) for sc in row] for s, row in [(seed, scores), *others]
        },
        "outlier_threshold": options.outlier_threshold,
        "real_outlier_max": float(real[-1]),
        "real_outlier_p99": float(np.percentile(real, 99)),
        "injected_outlier_min": float(injected[0]),
        "injected_outlier_median": float(np.median(injected)),
        "near_default": [options.near_distance, options.near_correlation],
        "near_used": facts.get("near_used", options.near_correlation),
        "near_sweep": [
            {
                "distance": d,
                "correlation": r,
                "candidates": c,
                "precision": sc.precision,
                "recall": sc.recall,
            }
            for d, r, c, sc in near_sweep
            if d == options.near_distance or r == options.near_correlation
        ],
    }


def _pct(x: float) -> str:
    return f"{x:.1%}"


def section(results: dict[str, dict[str, Any]]) -> str:
    """The page's section for every data set in ``results`` (empty when there is none)."""
    if not results:
        return ""
    lines = [
        HEADING,
        "",
        "The same dirt and the same default options on real images of other kinds "
        "(`bench/cleaning.py --dataset NAME`; figures kept in `docs/cleaning.json`).",
    ]
    for name, r in sorted(results.items()):
        seeds = r["by_seed"]
        first = next(iter(seeds.values()))
        lines += [
            "",
            f"### {name}",
            "",
            f"`{r['command']}` on {r['machine']}, {r['date']}: {r['description']}; "
            f"{r['images']} images with the dirt. The whole bench took "
            f"{r['bench_seconds'] / 60:.1f} minutes; `clean()` {r['clean_seconds']:.1f} s.",
            "",
            "Precision / recall at the default options, per dirt seed:",
            "",
            "| dirt seed | " + " | ".join(sc["name"] for sc in first) + " |",
            "| ---: | " + " | ".join("---" for _ in first) + " |",
        ]
        for seed, row in seeds.items():
            cells = " | ".join(
                f"{_pct(sc['precision'])} / {_pct(sc['recall'])} "
                f"({sc['tp']} of {sc['expected']}, {sc['fp']} false)"
                for sc in row
            )
            lines.append(f"| {seed} | {cells} |")
        wrong = {sc["name"]: sc["fp"] for sc in first if sc["name"] != "mislabels"}
        lines += [
            "",
            f"At the defaults (first seed) `clean()` removes {sum(wrong.values())} images that "
            "carry no dirt of their kind ("
            + ", ".join(f"{k}: {v}" for k, v in wrong.items())
            + f"), against {r['real_images']} real images; flagged mislabels are only reported.",
        ]
        used = r.get("near_used", r["near_default"][1])
        if used is None:
            lines += ["", "Near duplicates: `clean()` skipped the step (the images are too alike)."]
        elif used != r["near_default"][1]:
            lines += [
                "",
                f"Near duplicates: more than 5% of the images paired up at correlation "
                f"{r['near_default'][1]:g}, so `clean()` raised its threshold to {used:g} "
                "(the images are alike, not copied); the table is at that threshold.",
            ]
        d0, r0 = r["near_default"]
        at_d = [x for x in r["near_sweep"] if x["distance"] == d0]
        at_r = [x for x in r["near_sweep"] if x["correlation"] == r0]
        lines += [
            "",
            f"Outliers: real images score at most {r['real_outlier_max']:.2f} (99th percentile "
            f"{r['real_outlier_p99']:.2f}), injected non-digit images at least "
            f"{r['injected_outlier_min']:.2f} (median {r['injected_outlier_median']:.1f}); the "
            f"default threshold is {r['outlier_threshold']:g}. The quick mislabel model is "
            f"{_pct(r['mislabel_model_accuracy'])} accurate out of fold. Exact-duplicate groups "
            f"among the real images themselves (before any dirt): {r['real_exact_groups']}.",
            "",
            f"Near duplicates, precision / recall (first seed) at D={d0} bits over R, and at "
            f"R={r0:g} over D:",
            "",
            "| | " + " | ".join(f"R={x['correlation']:g}" for x in at_d) + " |",
            "| --- | " + " | ".join("---" for _ in at_d) + " |",
            f"| D={d0} | "
            + " | ".join(f"{x['precision']:.0%} / {x['recall']:.0%}" for x in at_d)
            + " |",
            "",
            "| | " + " | ".join(f"D={x['distance']}" for x in at_r) + " |",
            "| --- | " + " | ".join("---" for _ in at_r) + " |",
            f"| R={r0:g} | "
            + " | ".join(f"{x['precision']:.0%} / {x['recall']:.0%}" for x in at_r)
            + " |",
            "| candidates | " + " | ".join(str(x["candidates"]) for x in at_r) + " |",
        ]
    return "\n".join(lines) + "\n"


def splice(page: str, text: str) -> str:
    """``page`` with its other-kinds section replaced by ``text`` (put before ``NEXT``)."""
    end = page.find(NEXT)
    if end < 0:
        return page.rstrip() + "\n\n" + text
    start = page.find(HEADING)
    if start < 0 or start > end:
        start = end
    return page[:start] + (text.rstrip() + "\n\n" if text else "") + page[end:]


def load(docs: Path) -> dict[str, dict[str, Any]]:
    path = docs / RESULTS_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def save(docs: Path, name: str, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Store ``record`` as data set ``name``'s entry; return every entry."""
    results = load(docs)
    results[name] = record
    (docs / RESULTS_NAME).write_text(json.dumps(results, indent=1) + "\n")
    return results
