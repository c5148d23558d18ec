"""Write a cleaning run to disk: the cleaned .npz and the report (JSON, Markdown, PNG).

Every file is written to a temporary file in its folder and renamed into place
(``os.replace``), so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from search.atomic import atomic_write
from search.cleaning.records import REASON_TEXT, REASONS, CleanResult
from search.cleaning.sheet import contact_sheet, sections
from trainer.records import Dataset

FORMAT = "search-clean-report-v1"
_TOP_KEPT = 10  # the highest outlier scores that were kept, listed to help pick a threshold


def write_npz(path: Path, result: CleanResult) -> None:
    """The cleaned data set plus ``source_index`` (its rows' indices in the input), compressed."""
    ds = result.dataset

    def write(f: IO[bytes]) -> None:
        np.savez_compressed(
            f,
            images=ds.images,
            labels=ds.labels.astype(np.int64),
            class_names=np.array(ds.class_names),
            source_index=result.kept.astype(np.int64),
        )

    atomic_write(path, write)


def build_report(
    result: CleanResult, source: Dataset, *, data: str, fingerprints: tuple[str, str], out: str
) -> dict[str, Any]:
    """The JSON report: input, output, options, counts, every removal and every flag."""
    names = source.class_names
    scores = result.outlier_scores
    kept_scores = [
        (int(i), float(scores[i])) for i in result.kept.tolist() if np.isfinite(scores[i])
    ]
    kept_scores.sort(key=lambda t: -t[1])
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": {
            "data": data,
            "fingerprint": fingerprints[0],
            "n_images": len(source),
            "image_shape": list(source.images.shape[1:]),
            "class_names": list(names),
        },
        "output": {"path": out, "fingerprint": fingerprints[1], "n_images": len(result.kept)},
        "options": result.summary["options"],
        "counts": result.summary["removed"],
        "summary": result.summary,
        "removed": [r.to_dict() | {"class": names[r.label]} for r in result.removals],
        "flagged_mislabels": [
            f.to_dict() | {"class": names[f.label], "predicted_class": names[f.predicted]}
            for f in result.mislabels
        ],
        "highest_kept_outlier_scores": [
            {"index": i, "score": round(s, 3)} for i, s in kept_scores[:_TOP_KEPT]
        ],
    }


def markdown(report: dict[str, Any]) -> str:
    """A readable summary of ``report`` (``build_report``)."""
    inp, out, opts = report["input"], report["output"], report["options"]
    lines = [
        "# Cleaning report",
        "",
        f"- input: `{inp['data']}`: {inp['n_images']} images "
        f"{'x'.join(str(v) for v in inp['image_shape'])}, fingerprint `{inp['fingerprint'][:16]}`",
        f"- output: `{out['path']}`: {out['n_images']} images, "
        f"fingerprint `{out['fingerprint'][:16]}`",
        f"- made {report['created']} in {report['summary']['seconds']} s; the input was not "
        "changed",
        "",
        "| reason | removed |",
        "| --- | ---: |",
    ]
    lines += [f"| {REASON_TEXT[r]} | {report['counts'][r]} |" for r in REASONS]
    flags = report["flagged_mislabels"]
    dropped = opts["drop_mislabeled"]
    lines += [
        f"| **total** | **{sum(report['counts'].values())}** |",
        "",
        f"Likely mislabels flagged: {len(flags)} "
        f"({'removed: --drop-mislabeled' if dropped else 'kept; review them'}). "
        f"Quick model: {report['summary']['mislabel_model']}.",
        "",
        "Duplicates whose copies all carry one label keep their lowest-index copy; copies with "
        "different labels are all dropped, because the right label cannot be known. "
        "`removed.png` shows every removed image; `report.json` lists each one with its reason.",
        "",
    ]
    lines += _removed(report) + _mislabels(report) + _closest(report)
    lines += ["## Options", "", "```json", json.dumps(opts, indent=2), "```", ""]
    return "\n".join(lines)


def _text(text: str) -> Callable[[IO[bytes]], None]:
    def write(f: IO[bytes]) -> None:
        f.write(text.encode("utf-8"))

    return write


def write_report(
    folder: Path, result: CleanResult, source: Dataset, report: dict[str, Any]
) -> dict[str, Path]:
    """Write report.json, summary.md and removed.png into ``folder``; return their paths."""
    paths = {
        "json": folder / "report.json",
        "md": folder / "summary.md",
        "png": folder / "removed.png",
    }
    atomic_write(paths["json"], _text(json.dumps(report, indent=2) + "\n"))
    atomic_write(paths["md"], _text(markdown(report)))
    title = (
        f"{report['input']['data']}: removed {len(result.removals)} of {len(source)} images "
        f"(index in the input, label; reason)"
    )
    sheet = contact_sheet(source.images, sections(result, source.class_names), title)
    atomic_write(paths["png"], lambda f: sheet.save(f, format="PNG"))
    return paths


def _removed(report: dict[str, Any]) -> list[str]:
    """One section per reason, listing each removed image."""
    lines: list[str] = []
    for reason in REASONS:
        rows = [r for r in report["removed"] if r["reason"] == reason]
        if rows:
            lines += [f"## {REASON_TEXT[reason]} ({len(rows)})", ""]
            lines += [f"- #{r['index']} ({r['class']}): {r['detail']}" for r in rows]
            lines.append("")
    return lines


def _mislabels(report: dict[str, Any]) -> list[str]:
    """The flagged mislabels' table (nothing when there are none)."""
    flags = report["flagged_mislabels"]
    if not flags:
        return []
    dropped = report["options"]["drop_mislabeled"]
    lines = [
        "## Likely mislabels" + ("" if dropped else " (kept, for review)"),
        "",
        "| index | label | p(label) | model says | p |",
        "| ---: | --- | ---: | --- | ---: |",
    ]
    lines += [
        f"| {f['index']} | {f['class']} | {f['p_label']:.3f} | {f['predicted_class']} | "
        f"{f['p_predicted']:.3f} |"
        for f in flags
    ]
    return [*lines, ""]


def _closest(report: dict[str, Any]) -> list[str]:
    """The kept images closest to the outlier threshold."""
    top = report["highest_kept_outlier_scores"]
    if not top:
        return []
    threshold = report["options"]["outlier_threshold"]
    return [
        "## Closest calls",
        "",
        f"Highest outlier scores among the kept images (threshold {threshold}): "
        + ", ".join(f"#{t['index']} {t['score']:.2f}" for t in top),
        "",
    ]
