"""What an export's calibration slice showed, in words: the temperature and ECE, prediction
sets, accuracy when abstaining, and the in-domain threshold with its measured rates. From the
``trust`` summary of ``config.json`` (``trainer.calibrate.fit``), for the export's ``report.md``
and the study's report page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MISSING = (
    "no calibration or in-domain flag: this model was exported before they existed; export it "
    "again (python -m search.export) to get them"
)


def trust_rows(summary: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(what, value) rows; one row saying what is missing when there is no calibration."""
    if not summary:
        return [("calibration", MISSING)]
    if "missing" in summary:
        return [("calibration", str(summary["missing"]))]
    n = int(summary["calibration_images"])
    domain = summary["domain"]
    rows = [
        (
            "calibration",
            f"temperature {summary['temperature']:.3f}, fitted on {n} held-back images the "
            f"weights never trained on; ECE {summary['ece_before']:.3f} before, "
            f"{summary['ece_after']:.3f} after (each half's temperature fitted on the other "
            "half); accuracy unchanged",
        ),
        (
            "prediction sets",
            "; ".join(
                f"{s['coverage']:.0%}: {s['mean_set_size']:.2f} classes on average, "
                f"{s['set_coverage']:.1%} covered"
                for s in summary["sets"]
            )
            + " (split conformal on the slice; search.predict --coverage)",
        ),
        (
            "in-domain flag",
            f"domain_score above {domain['threshold']:.3f} is flagged; it keeps at least "
            f"{domain['retain_goal']:.0%} of in-domain images with {domain['confidence']:.0%} "
            f"confidence, {domain['retained']:.1%} of the slice; {domain['detector']}",
        ),
        (
            "flagged when shifted",
            ", ".join(f"{k} {v:.0%}" for k, v in domain["flagged_shifted"].items())
            + " of the slice's copies (trainer/shifts.py: each beyond what robust trains on)",
        ),
    ]
    return rows


def abstention_rows(summary: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(share answered, images, accuracy) when the model abstains on its least confident."""
    if not summary or "abstention" not in summary:
        return []
    return [
        (f"{r['coverage']:.0%}", str(r["images"]), f"{r['accuracy']:.4f}")
        for r in summary["abstention"]
    ]


def trust_lines(summary: Mapping[str, Any] | None) -> list[str]:
    """The report.md section."""
    lines = ["## Trust: calibration, prediction sets, in-domain flag", ""]
    lines += [f"- {what}: {value}" for what, value in trust_rows(summary)]
    rows = abstention_rows(summary)
    if rows:
        lines += [
            "",
            "![reliability diagram of the calibration slice](reliability.png)",
            "",
            "Accuracy when the model answers only on its most confident images (calibration slice):",
            "",
            "| answered | images | accuracy |",
            "|---:|---:|---:|",
        ]
        lines += [f"| {a} | {n} | {acc} |" for a, n, acc in rows]
    lines.append("")
    return lines
