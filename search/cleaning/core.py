"""``clean``: run the detectors in order and decide what leaves the data set.

Order: exact duplicates, near duplicates, outliers, then likely mislabels on what is left, so
no image is reported twice and later detectors do not see copies that would skew them.
Duplicates with one label keep their lowest-index copy; duplicates whose copies carry
different labels are all dropped, because which label is right cannot be known.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np

from search.cleaning import records as R
from search.cleaning.exact import exact_groups
from search.cleaning.mislabels import flag, mislabel_proba
from search.cleaning.near import components, near_pairs
from search.cleaning.outliers import outlier_scores
from search.cleaning.records import CleanOptions, CleanResult, MislabelFlag, Removal
from trainer.records import Dataset

log = logging.getLogger("search.cleaning")


def clean(ds: Dataset, options: CleanOptions | None = None) -> CleanResult:
    """Find duplicates, outliers and likely mislabels in ``ds``; return what is left and why.

    Pure: ``ds`` is not changed, nothing is written. Indices in the result are input indices.
    """
    options = options or CleanOptions()
    n, started = len(ds), time.perf_counter()
    names, labels = ds.class_names, ds.labels
    removed: dict[int, Removal] = {}
    seconds: dict[str, float] = {}

    def alive() -> np.ndarray:
        return np.array([i for i in range(n) if i not in removed], dtype=np.int64)

    def resolve(group: Sequence[int], kind: str, evidence: dict[int, tuple[int, float]]) -> None:
        group = sorted(group)
        group_labels = {int(labels[i]) for i in group}
        conflict = len(group_labels) > 1
        for i in group if conflict else group[1:]:
            partner, score = evidence.get(i, (group[1] if i == group[0] else group[0], 1.0))
            removed[i] = Removal(
                index=i,
                reason=_reason(kind, conflict),
                detail=_dup_detail(kind, conflict, i, group, labels, names, partner, score),
                label=int(labels[i]),
                group=tuple(group),
                kept=None if conflict else group[0],
                score=round(float(score), 4),
            )

    t = time.perf_counter()
    log.info("cleaning %d images: looking for exact duplicates", n)
    for g in exact_groups(ds.images):
        resolve(g, "exact", {})
    seconds["exact"] = time.perf_counter() - t

    t = time.perf_counter()
    idx = alive()
    log.info("near duplicates: pHash candidates and shift-tolerant correlation on %d", idx.size)
    pairs = near_pairs(ds.images[idx], options.near_distance, options.near_correlation)
    ok = pairs.confirmed(options.near_distance, options.near_correlation)
    gi, gj, corr = idx[pairs.i[ok]], idx[pairs.j[ok]], pairs.correlation[ok]
    best: dict[int, tuple[int, float]] = {}
    for a, b, c in zip(gi.tolist(), gj.tolist(), corr.tolist(), strict=True):
        for me, other in ((a, b), (b, a)):
            if c > best.get(me, (-1, -2.0))[1]:
                best[me] = (other, c)
    for comp in components(idx.size, pairs.i[ok], pairs.j[ok]):
        resolve([int(idx[k]) for k in comp], "near", best)
    seconds["near"] = time.perf_counter() - t

    t = time.perf_counter()
    idx = alive()
    scores = np.full(n, np.nan)
    if math.isfinite(options.outlier_threshold) and idx.size > 1:
        log.info("outliers: colour/texture features of %d images", idx.size)
        scores[idx] = outlier_scores(ds.images[idx], options.outlier_neighbors)
        for i in idx[scores[idx] > options.outlier_threshold].tolist():
            removed[i] = Removal(
                index=i,
                reason=R.OUTLIER,
                detail=f"{scores[i]:.1f}x the typical neighbour distance "
                f"(threshold {options.outlier_threshold:g})",
                label=int(labels[i]),
                score=round(float(scores[i]), 3),
            )
    seconds["outliers"] = time.perf_counter() - t

    t = time.perf_counter()
    idx = alive()
    flags: list[MislabelFlag] = []
    model_note = "ok"
    log.info("likely mislabels: %d-fold quick model on %d images", options.folds, idx.size)
    proba = mislabel_proba(ds.images[idx], labels[idx], len(names), options.folds, options.seed)
    if proba is None:
        model_note = "skipped: needs 2+ classes with 2+ images each"
        log.warning("mislabel check %s", model_note)
    else:
        mask = flag(
            proba, labels[idx], options.mislabel_confidence, options.mislabel_max_label_prob
        )
        for k in np.flatnonzero(mask).tolist():
            i, lab = int(idx[k]), int(labels[idx[k]])
            p = proba[k].copy()
            p[lab] = -1.0
            pred = int(np.argmax(p))
            flags.append(
                MislabelFlag(
                    i, lab, pred, round(float(proba[k, lab]), 4), round(float(p[pred]), 4),
                    removed=options.drop_mislabeled,
                )
            )  # fmt: skip
            if options.drop_mislabeled:
                removed[i] = Removal(
                    index=i,
                    reason=R.MISLABEL,
                    detail=f"labelled '{names[lab]}' (p={proba[k, lab]:.3f}), the quick model "
                    f"says '{names[pred]}' (p={p[pred]:.3f})",
                    label=lab,
                    score=round(float(p[pred]), 4),
                )
    seconds["mislabels"] = time.perf_counter() - t

    kept = alive()
    removals = tuple(sorted(removed.values(), key=lambda r: (R.REASONS.index(r.reason), r.index)))
    counts = {reason: 0 for reason in R.REASONS}
    for r in removals:
        counts[r.reason] += 1
    total = time.perf_counter() - started
    summary = {
        "n_input": n,
        "n_kept": int(kept.size),
        "n_removed": len(removals),
        "removed": counts,
        "flagged_mislabels": len(flags),
        "mislabel_model": model_note,
        "options": options.to_dict(),
        "seconds": round(total, 2),
    }
    log.info(
        "cleaning done in %.1fs: kept %d of %d (%s); %d likely mislabels flagged",
        total,
        kept.size,
        n,
        ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing removed",
        len(flags),
    )
    return CleanResult(
        dataset=ds.subset(kept),
        kept=kept,
        removals=removals,
        mislabels=tuple(flags),
        summary=summary | {"step_seconds": {k: round(v, 2) for k, v in seconds.items()}},
        outlier_scores=scores,
    )


def _reason(kind: str, conflict: bool) -> str:
    if kind == "exact":
        return R.EXACT_CONFLICT if conflict else R.EXACT_DUPLICATE
    return R.NEAR_CONFLICT if conflict else R.NEAR_DUPLICATE


def _dup_detail(
    kind: str,
    conflict: bool,
    i: int,
    group: list[int],
    labels: np.ndarray,
    names: tuple[str, ...],
    partner: int,
    score: float,
) -> str:
    what = (
        f"byte-identical to #{partner}"
        if kind == "exact"
        else (f"near copy of #{partner} (shift-tolerant correlation {score:.3f})")
    )
    if not conflict:
        return f"{what}, same label '{names[int(labels[i])]}'; #{group[0]} kept"
    by_label: dict[str, list[str]] = {}
    for g in group:
        by_label.setdefault(names[int(labels[g])], []).append(f"#{g}")
    listed = "; ".join(f"'{name}': {', '.join(ids)}" for name, ids in by_label.items())
    return f"{what}; the copies are labelled differently ({listed}): all dropped"
