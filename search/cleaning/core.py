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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from search.cleaning import records as R
from search.cleaning.exact import exact_groups
from search.cleaning.mislabels import flag, mislabel_proba
from search.cleaning.near import components, near_pairs
from search.cleaning.outliers import outlier_scores
from search.cleaning.records import CleanOptions, CleanResult, MislabelFlag, Removal
from trainer.records import Dataset

log = logging.getLogger(__name__)

Removed = dict[int, Removal]  # input index -> why it left; filled step by step


def clean(ds: Dataset, options: CleanOptions | None = None) -> CleanResult:
    """Find duplicates, outliers and likely mislabels in ``ds``; return what is left and why.

    Pure: ``ds`` is not changed, nothing is written. Indices in the result are input indices.
    """
    options = options or CleanOptions()
    started = time.perf_counter()
    removed: Removed = {}
    seconds: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        value = step()
        seconds[name] = time.perf_counter() - t
        return value

    log.info("cleaning %d images: looking for exact duplicates", len(ds))

    def exact() -> None:
        for group in exact_groups(ds.images):
            _resolve(ds, group, "exact", {}, removed)

    timed("exact", exact)
    near_used = timed("near", lambda: _near_step(ds, options, removed))
    scores = timed("outliers", lambda: _outlier_step(ds, options, removed))
    flags, model_note = timed("mislabels", lambda: _mislabel_step(ds, options, removed))
    kept = _alive(len(ds), removed)
    removals = tuple(sorted(removed.values(), key=lambda r: (R.REASONS.index(r.reason), r.index)))
    counts = {reason: 0 for reason in R.REASONS}
    for r in removals:
        counts[r.reason] += 1
    total = time.perf_counter() - started
    log.info(
        "cleaning done in %.1fs: kept %d of %d (%s); %d likely mislabels flagged",
        total,
        kept.size,
        len(ds),
        ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing removed",
        len(flags),
    )
    summary = {
        "n_input": len(ds),
        "n_kept": int(kept.size),
        "n_removed": len(removals),
        "removed": counts,
        "flagged_mislabels": len(flags),
        "mislabel_model": model_note,
        "options": options.to_dict(),
        "near_correlation_used": near_used,
        "seconds": round(total, 2),
        "step_seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    return CleanResult(
        dataset=ds.subset(kept),
        kept=kept,
        removals=removals,
        mislabels=tuple(flags),
        summary=summary,
        outlier_scores=scores,
    )


def _alive(n: int, removed: Removed) -> np.ndarray:
    return np.array([i for i in range(n) if i not in removed], dtype=np.int64)


# Near duplicates are dirt, a few in a hundred; when more images than this share pair up at the
# threshold, the images themselves are alike (low-detail digits, say), not copied, and the
# threshold is raised along STRICTER until they do not (bench/cleaning.py --dataset digits).
MAX_NEAR_SHARE = 0.05
STRICTER = (0.95, 0.97, 0.98, 0.99, 0.995)  # steps set before measuring (docs/constants.md)


def _near_step(ds: Dataset, options: CleanOptions, removed: Removed) -> float | None:
    """Remove near duplicates; return the correlation threshold used (None: none was safe)."""
    idx = _alive(len(ds), removed)
    log.info("near duplicates: pHash candidates and shift-tolerant correlation on %d", idx.size)
    pairs = near_pairs(ds.images[idx], options.near_distance, options.near_correlation)
    used: float | None = options.near_correlation
    ok = pairs.confirmed(options.near_distance, options.near_correlation)
    for stricter in (t for t in STRICTER if t > options.near_correlation):
        share = np.union1d(pairs.i[ok], pairs.j[ok]).size / max(1, idx.size)
        if share <= MAX_NEAR_SHARE:
            break
        log.warning(
            "near duplicates: %.0f%% of the images pair up at correlation %.3g, too many to be "
            "copies (the images are alike); trying %.3g",
            100 * share,
            used,
            stricter,
        )
        used, ok = stricter, pairs.confirmed(options.near_distance, stricter)
    if np.union1d(pairs.i[ok], pairs.j[ok]).size / max(1, idx.size) > MAX_NEAR_SHARE:
        log.warning(
            "near duplicates: skipped, the images are too alike for the check at any threshold"
        )
        return None
    best: dict[int, tuple[int, float]] = {}  # each image's most alike confirmed partner
    for a, b, c in zip(
        idx[pairs.i[ok]].tolist(), idx[pairs.j[ok]].tolist(), pairs.correlation[ok].tolist(),
        strict=True,
    ):  # fmt: skip
        for me, other in ((a, b), (b, a)):
            if c > best.get(me, (-1, -2.0))[1]:
                best[me] = (other, c)
    for comp in components(idx.size, pairs.i[ok], pairs.j[ok]):
        _resolve(ds, [int(idx[k]) for k in comp], "near", best, removed)
    return used


def _outlier_step(ds: Dataset, options: CleanOptions, removed: Removed) -> np.ndarray:
    scores = np.full(len(ds), np.nan)
    idx = _alive(len(ds), removed)
    if not math.isfinite(options.outlier_threshold) or idx.size < 2:
        return scores
    log.info("outliers: colour/texture features of %d images", idx.size)
    scores[idx] = outlier_scores(ds.images[idx], options.outlier_neighbors)
    for i in idx[scores[idx] > options.outlier_threshold].tolist():
        removed[i] = Removal(
            index=i,
            reason=R.OUTLIER,
            detail=f"{scores[i]:.1f}x the typical neighbour distance "
            f"(threshold {options.outlier_threshold:g})",
            label=int(ds.labels[i]),
            score=round(float(scores[i]), 3),
        )
    return scores


def _mislabel_step(
    ds: Dataset, options: CleanOptions, removed: Removed
) -> tuple[list[MislabelFlag], str]:
    idx = _alive(len(ds), removed)
    names, labels = ds.class_names, ds.labels[idx]
    log.info("likely mislabels: %d-fold quick model on %d images", options.folds, idx.size)
    proba = mislabel_proba(ds.images[idx], labels, len(names), options.folds, options.seed)
    if proba is None:
        note = "skipped: needs 2+ classes with 2+ images each"
        log.warning("mislabel check %s", note)
        return [], note
    flags = []
    mask = flag(proba, labels, options.mislabel_confidence, options.mislabel_max_label_prob)
    for k in np.flatnonzero(mask).tolist():
        i, lab = int(idx[k]), int(labels[k])
        others = proba[k].copy()
        others[lab] = -1.0
        pred = int(np.argmax(others))
        p_label, p_pred = float(proba[k, lab]), float(proba[k, pred])
        flags.append(
            MislabelFlag(i, lab, pred, round(p_label, 4), round(p_pred, 4), options.drop_mislabeled)
        )
        if options.drop_mislabeled:
            removed[i] = Removal(
                index=i,
                reason=R.MISLABEL,
                detail=f"labelled '{names[lab]}' (p={p_label:.3f}), the quick model says "
                f"'{names[pred]}' (p={p_pred:.3f})",
                label=lab,
                score=round(p_pred, 4),
            )
    return flags, "ok"


def _resolve(
    ds: Dataset,
    group: Sequence[int],
    kind: str,
    evidence: dict[int, tuple[int, float]],
    removed: Removed,
) -> None:
    """One duplicate group: keep the lowest index if all share a label, else drop all."""
    group = sorted(group)
    conflict = len({int(ds.labels[i]) for i in group}) > 1
    if kind == "exact":
        reason = R.EXACT_CONFLICT if conflict else R.EXACT_DUPLICATE
    else:
        reason = R.NEAR_CONFLICT if conflict else R.NEAR_DUPLICATE
    for i in group if conflict else group[1:]:
        partner, score = evidence.get(i, (group[1] if i == group[0] else group[0], 1.0))
        removed[i] = Removal(
            index=i,
            reason=reason,
            detail=_dup_detail(ds, kind, conflict, i, group, partner, score),
            label=int(ds.labels[i]),
            group=tuple(group),
            kept=None if conflict else group[0],
            score=round(float(score), 4),
        )


def _dup_detail(
    ds: Dataset, kind: str, conflict: bool, i: int, group: list[int], partner: int, score: float
) -> str:
    names, labels = ds.class_names, ds.labels
    if kind == "exact":
        what = f"byte-identical to #{partner}"
    else:
        what = f"near copy of #{partner} (shift-tolerant correlation {score:.3f})"
    if not conflict:
        return f"{what}, same label '{names[int(labels[i])]}'; #{group[0]} kept"
    by_label: dict[str, list[str]] = {}
    for g in group:
        by_label.setdefault(names[int(labels[g])], []).append(f"#{g}")
    listed = "; ".join(f"'{name}': {', '.join(ids)}" for name, ids in by_label.items())
    return f"{what}; the copies are labelled differently ({listed}): all dropped"
