"""The study's symmetry and colour: declared by the user, or read from the data's evidence.

Pure decisions on ``search.data.invariance.Invariance`` figures, no I/O. ``auto`` takes the
largest symmetry every one of whose changes keeps at least ``KEEPS_LABEL`` of a quick
classifier's accuracy above chance, and shifts colour unless a grey-image classifier keeps less
than ``COLOUR_NOT_NEEDED`` of it. With a classifier too weak to tell (``MIN_SIGNAL`` above
chance) nothing is assumed: ``none`` and ``keep``, the choices that cannot change a label.
The constants and the figures they were read from: ``bench/traits.py``, ``docs/traits.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search.data.invariance import Invariance

KEEPS_LABEL = 0.8  # retained share a change must keep to count as label-safe
COLOUR_NOT_NEEDED = 0.8  # grey classifier's retained share above which colour may shift
MIN_SIGNAL = 0.1  # plain accuracy above chance below which the evidence is too weak
AUTO = "auto"
# The changes each symmetry makes; a symmetry is label-safe when all of them are.
NEEDS = {
    "dihedral": ("mirror", "flip", "quarter_turn", "half_turn", "transpose"),
    "mirror": ("mirror",),
}


@dataclass(frozen=True)
class Traits:
    """What augmentation, corruptions and test-time views may change, and why."""

    symmetry: str
    colour: str
    symmetry_reason: str
    colour_reason: str
    evidence: dict[str, Any] | None = None  # Invariance.as_dict(), when measured

    def attrs(self) -> dict[str, Any]:
        """The study's user attributes for them."""
        return {
            "symmetry": self.symmetry,
            "colour": self.colour,
            "symmetry_reason": self.symmetry_reason,
            "colour_reason": self.colour_reason,
            "traits_evidence": self.evidence,
        }


def _pct(x: float) -> str:
    return f"{100 * max(0.0, x):.0f}%"


def share_noise(inv: Invariance) -> float:
    """About two standard errors of a retained share at this classifier's accuracy and count:
    a share divides the difference of two accuracies (each with its binomial error) by
    (accuracy - chance), so a weak classifier on few images knows its shares only loosely."""
    p, n = inv.plain_accuracy, max(1, inv.n_scored)
    return 2.0 * math.sqrt(2.0 * max(p * (1.0 - p), 1e-6) / n) / max(p - inv.chance, 1e-6)


def _unsure(inv: Invariance) -> str:
    return (
        f"; but at accuracy {inv.plain_accuracy:.2f} against chance {inv.chance:.2f} on "
        f"{inv.n_scored} images a share is known only to about +/-{_pct(share_noise(inv))}, "
        "too loosely to tell"
    )


def decide_symmetry(inv: Invariance) -> tuple[str, str]:
    """The largest label-safe symmetry the figures show, and the sentence that says why."""
    if inv.plain_accuracy - inv.chance < MIN_SIGNAL:
        return "none", (
            f"a quick classifier scored {inv.plain_accuracy:.2f} against chance {inv.chance:.2f}, "
            "too little to tell which turns keep the label, so none is assumed"
        )
    kept = ", ".join(f"{k.replace('_', ' ')} {_pct(v)}" for k, v in inv.retained.items())
    where = f"a quick classifier kept {kept} of its accuracy above chance on turned images"
    for symmetry in ("dihedral", "mirror"):
        if all(inv.retained.get(k, 0.0) >= KEEPS_LABEL for k in NEEDS[symmetry]):
            return symmetry, f"{where} (at least {_pct(KEEPS_LABEL)} counts as label-safe)"
    noise = share_noise(inv)
    if any(all(inv.retained.get(k, 0.0) + noise >= KEEPS_LABEL for k in NEEDS[s]) for s in NEEDS):
        return "none", f"{where}{_unsure(inv)} whether a turn keeps the label, so none is assumed"
    return "none", f"{where}: no turn keeps {_pct(KEEPS_LABEL)}, so the images have an up"


def decide_colour(inv: Invariance) -> tuple[str, str]:
    """``shift`` unless colour carries the label, and the sentence that says why."""
    if inv.grey_images:
        return "shift", "the images are grey: colour changes do nothing"
    if inv.plain_accuracy - inv.chance < MIN_SIGNAL:
        return "keep", "too little signal to tell whether colour carries the label, so it is kept"
    share = _pct(inv.grey_retained)
    if inv.grey_retained >= COLOUR_NOT_NEEDED:
        return "shift", f"a classifier on grey copies kept {share} of its accuracy above chance"
    if inv.grey_retained + share_noise(inv) >= COLOUR_NOT_NEEDED:
        return "keep", (
            f"a classifier on grey copies kept {share} of its accuracy above chance"
            f"{_unsure(inv)} whether colour carries the label, so it is kept"
        )
    return "keep", (
        f"a classifier on grey copies kept only {share} of its accuracy above chance: "
        "colour carries the label"
    )


def stored(attrs: dict[str, Any]) -> Traits:
    """The traits a study was created with; a study made before they existed trained its
    trials with quarter turns, mirrors and colour shifts, so those it keeps."""
    if "symmetry" not in attrs:
        why = "the study predates --symmetry and --colour: as its trials trained"
        return Traits("dihedral", "shift", why, why)
    return Traits(
        str(attrs["symmetry"]),
        str(attrs.get("colour", "shift")),
        str(attrs.get("symmetry_reason", "")),
        str(attrs.get("colour_reason", "")),
        attrs.get("traits_evidence"),
    )


def decide(symmetry: str, colour: str, measure: Any) -> Traits:
    """The study's traits: each declared value as given, each ``auto`` read from the figures
    ``measure()`` returns (called only when one of them is ``auto``)."""
    inv: Invariance | None = measure() if AUTO in (symmetry, colour) else None
    if symmetry == AUTO:
        assert inv is not None
        symmetry, why_s = decide_symmetry(inv)
        why_s = "measured: " + why_s
    else:
        why_s = "declared (--symmetry or the space file)"
    if colour == AUTO:
        assert inv is not None
        colour, why_c = decide_colour(inv)
        why_c = "measured: " + why_c
    else:
        why_c = "declared (--colour or the space file)"
    return Traits(symmetry, colour, why_s, why_c, inv.as_dict() if inv else None)
