"""``python -m search.clean --data IN --out OUT.npz``: write a cleaned copy of a data set.

Removes exact and near duplicates and images that are not like the others (outliers), flags
likely mislabels for review, and writes a report next to the output. The input is only read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.cli import EXIT_FATAL as EXIT_FAILED
from search.cli import EXIT_OK, Parser, setup_logging, usage_error

log = logging.getLogger("search.clean")


def _thresholds(p: argparse.ArgumentParser, d: Any) -> None:
    """--help's flags: each detector's threshold and the mislabel model's seed (``d``: the
    defaults, a ``CleanOptions``)."""
    p.add_argument(
        "--near-distance",
        type=int,
        default=d.near_distance,
        metavar="D",
        help="pHash Hamming distance (0-64 bits) under which two images are compared pixel "
        f"by pixel as possible near duplicates (default {d.near_distance}; higher finds "
        "more heavily changed copies, slower)",
    )
    p.add_argument(
        "--near-correlation",
        type=float,
        default=d.near_correlation,
        metavar="R",
        help="correlation (best over shifts of up to 3/64 of the frame) that confirms a near "
        f"duplicate (default {d.near_correlation}, raised when more than 5%% of the images pair "
        "up: then they are alike, not copied)",
    )
    p.add_argument(
        "--outlier-threshold",
        type=float,
        default=d.outlier_threshold,
        metavar="T",
        help="remove an image whose mean distance to its nearest images, in robustly "
        "standardised colour/texture features, exceeds T times the typical one (default "
        f"{d.outlier_threshold:g}; lower removes more; 'inf' keeps all)",
    )
    p.add_argument(
        "--mislabel-confidence",
        type=float,
        default=d.mislabel_confidence,
        metavar="C",
        help="flag an image as a likely mislabel when the quick out-of-fold model gives "
        f"another class at least C and its own label under {d.mislabel_max_label_prob} "
        f"(default {d.mislabel_confidence})",
    )
    p.add_argument(
        "--drop-mislabeled",
        action="store_true",
        help="also remove the likely mislabels (default: keep them and list them for review)",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help="seed of the mislabel model's folds (default 0)"
    )


def build_parser() -> argparse.ArgumentParser:
    from search.cleaning.records import CleanOptions

    d = CleanOptions()
    p = Parser(
        prog="python -m search.clean",
        description="Write a cleaned copy of an image data set and a report of what was "
        "removed and why: exact duplicates and near duplicates (one copy kept when all copies "
        "share a label; all copies dropped when their labels differ), outliers (images unlike "
        "the rest, found without labels) and, only with --drop-mislabeled, likely mislabels "
        "(otherwise they are only listed for review). The input is never changed.",
        epilog="The report folder gets report.json (every removed index with its reason), "
        "summary.md (readable) and removed.png (contact sheet of the removed images). "
        "Defaults and measured precision/recall: docs/cleaning.md. Exit codes: 0 written, "
        "1 the output could not be written, 2 bad usage or input (nothing is written).",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="PATH|demo|demo-orientation|bloodmnist",
        help="the data set to clean: an .npz (images/labels[/class_names] or MedMNIST "
        "layout), a folder of class folders, 'demo', 'demo-orientation' or 'bloodmnist'",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="OUT.npz",
        help="cleaned data set to write (images, labels, class_names, and source_index: each "
        "kept image's index in the input); must not be the input file",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help="resize to PX x PX (Lanczos) before cleaning; the output keeps that size "
        "(default: the stored size)",
    )
    _thresholds(p, d)
    p.add_argument(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="where the report goes (default: next to OUT, named OUT's stem + '_report')",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    from search.cleaning import CleanOptions, clean
    from search.cleaning.report import build_report, write_npz, write_report
    from search.data import DataError, fingerprint, load_dataset

    out = Path(args.out).expanduser()
    data_path = Path(args.data).expanduser()
    if out.suffix.lower() != ".npz":
        return usage_error(
            f"--out {args.out!r} must end in .npz (it is written as an .npz archive)"
        )
    if out.is_dir():
        return usage_error(f"--out {args.out!r} is a folder; pass a file name ending in .npz")
    if _same_file(out, data_path) or out.resolve() == data_path.resolve():
        return usage_error(
            f"--out {args.out!r} is the input file; the input is never overwritten: "
            "pass another file name"
        )
    report_dir = Path(args.report_dir) if args.report_dir else out.with_name(out.stem + "_report")
    if report_dir.exists() and not report_dir.is_dir():
        return usage_error(f"--report-dir {str(report_dir)!r} exists and is not a folder")
    if report_dir.resolve() == data_path.resolve():
        return usage_error(f"--report-dir {str(report_dir)!r} is the input; pick another folder")
    try:
        options = CleanOptions(
            near_distance=args.near_distance,
            near_correlation=args.near_correlation,
            outlier_threshold=args.outlier_threshold,
            mislabel_confidence=args.mislabel_confidence,
            drop_mislabeled=args.drop_mislabeled,
            seed=args.seed,
        )
        source = load_dataset(args.data, image_size=args.image_size)
    except (DataError, ValueError) as exc:
        return usage_error(str(exc))
    log.info("loaded %d images from %s", len(source), args.data)
    result = clean(source, options)
    fingerprints = (fingerprint(source), fingerprint(result.dataset))
    report = build_report(
        result, source, data=str(args.data), fingerprints=fingerprints, out=str(out)
    )
    try:
        write_npz(out, result)
        paths = write_report(report_dir, result, source, report)
    except OSError as exc:
        print(f"error: cannot write the output ({exc}); nothing else was changed", file=sys.stderr)
        return EXIT_FAILED
    counts = ", ".join(f"{k} {v}" for k, v in result.summary["removed"].items() if v)
    flagged = len(result.mislabels)
    print(
        f"kept {len(result.kept)} of {len(source)} images -> {out}\n"
        f"removed: {counts or 'nothing'}\n"
        f"likely mislabels: {flagged} "
        f"{'removed' if options.drop_mislabeled else 'flagged for review (kept)'}\n"
        f"report: {paths['md']} (also report.json, removed.png)"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
