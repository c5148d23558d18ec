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


def _accuracy(summary: Mapping[str, Any]) -> str:
    after = float(summary["accuracy"])
    before = float(summary.get("accuracy_before", after))
    if before == after:
        return f"{after:.4f} before and after"
    return f"{before:.4f} before, {after:.4f} after (views average tempered probabilities)"


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
            f"half); accuracy {_accuracy(summary)}",
        ),
        (
            "prediction sets",
            "; ".join(
                f"{s['coverage']:.0%}: {s['mean_set_size']:.2f} classes on average, "
                f"{s['set_coverage']:.1%} covered"
                for s in summary["sets"]
            )
            + " (split conformal, each half of the slice with the other half's threshold; "
            "search.predict --coverage)",
        ),
        (
            "in-domain flag",
            f"domain_score above {domain['threshold']:.3f} is flagged; it keeps at least "
            f"{domain['retain_goal']:.0%} of in-domain images with {domain['confidence']:.0%} "
            f"confidence, {domain['retained']:.1%} of the slice (each half's threshold fitted on "
            f"the other half); {domain['detector']}",
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


def trust_html(summary: Mapping[str, Any] | None) -> str:
    """The report page's section: the rows, the reliability diagram and the abstention table."""
    import base64
    import html

    from search.reporting.calibration import Reliability, reliability_png

    e = html.escape
    rows = "".join(
        f"<tr><td>{e(what)}</td><td>{e(value)}</td></tr>" for what, value in trust_rows(summary)
    )
    parts = [
        "<h2>Trust: calibration, prediction sets, in-domain flag</h2>",
        f"<table><tr><th>what</th><th>measured on the calibration slice</th></tr>{rows}</table>",
    ]
    if summary and "reliability" in summary:
        table = Reliability.from_dict(dict(summary["reliability"]))
        title = f"calibration slice: ECE {float(summary['ece_after']):.3f} (cross-fitted)"
        png = base64.b64encode(reliability_png(table, title)).decode("ascii")
        parts.append(
            "<figure><img alt='reliability diagram' "
            f"src='data:image/png;base64,{png}'><figcaption>Accuracy against confidence on the "
            "images held back from training, after calibration.</figcaption></figure>"
        )
    abstain = abstention_rows(summary)
    if abstain:
        body = "".join(f"<tr><td>{a}</td><td>{n}</td><td>{acc}</td></tr>" for a, n, acc in abstain)
        parts.append(
            "<p class='note'>Accuracy when the model answers only on its most confident "
            "images:</p><table><tr><th>answered</th><th>images</th><th>accuracy</th></tr>"
            f"{body}</table>"
        )
    return "\n".join(parts)
