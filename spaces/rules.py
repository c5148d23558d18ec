"""What each field of a space file accepts: the ranges, choices, integers and texts, with the
same bounds ``TrialConfig`` checks, so a space never samples a configuration it refuses; and the
small value tests ``spaces.file`` uses to name what was wrong."""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from trainer.config import AUGMENT_LEVELS, BACKBONES, COLOURS, OPTIMIZERS, SYMMETRIES

# trainer/folds.py stores one character per image for its fold, so a study holds at most 36
# folds; spaces import only trainer.config, so the limit is restated here (a test ties the two).
MAX_FOLDS = 36
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Range:
    """What one ``[low, high]`` field accepts: the values a trial takes, and its scale."""

    log: bool  # sampled on a log scale: both ends above 0
    lowest: float
    below: float  # every value must be below this
    closed_low: bool = True  # ``lowest`` itself allowed

    def bounds(self) -> str:
        return f"{'[' if self.closed_low else '('}{self.lowest:g}, {self.below:g})"


# The same bounds TrialConfig checks, so a space never samples a config it refuses.
RANGES = {
    "learning_rate": Range(log=True, lowest=0.0, below=10.0, closed_low=False),
    "weight_decay": Range(log=True, lowest=0.0, below=math.inf),
    "l2": Range(log=True, lowest=0.0, below=math.inf),
    "dropout": Range(log=False, lowest=0.0, below=1.0),
    "label_smoothing": Range(log=False, lowest=0.0, below=1.0),
}


@dataclass(frozen=True)
class Choices:
    """What a list-of-choices field accepts: names from a table, integers >= a minimum, or booleans."""

    names: tuple[str, ...] = ()
    minimum: int | None = None

    def noun(self) -> str:
        if self.names:
            return f"names from {', '.join(self.names)}"
        if self.minimum is not None:
            return f"integers >= {self.minimum}"
        return "true/false values"

    def accepts(self, value: object) -> bool:
        if self.names:
            return isinstance(value, str) and value in self.names
        if self.minimum is not None:
            return is_int(value) and value >= self.minimum
        return isinstance(value, bool)

    def guess(self, value: object) -> object | None:
        """The choice ``value`` most likely meant (``"32"`` -> 32, ``"Adam"`` -> "adam"), if any."""
        if self.accepts(value):
            return value
        if self.names:
            lowered = {n.lower(): n for n in self.names}
            close = difflib.get_close_matches(str(value).lower(), list(lowered), n=1)
            return lowered[close[0]] if close else None
        if self.minimum is not None:
            number = as_int(value)
            return number if number is not None and number >= self.minimum else None
        return {"true": True, "1": True, "false": False, "0": False}.get(str(value).lower())

    def problem(self, key: str, value: list[Any]) -> str:
        """Why ``value``, a list holding at least one refused element, is refused."""
        bad = [v for v in value if not self.accepts(v)]
        if self.names:
            return f"unknown {key} {as_json(bad)}"
        if isinstance(bad[0], bool):
            return f"{as_json(bad[0])} is a boolean, not an integer"
        if self.minimum is None:
            return f"{as_json(bad[0])} is not true or false"
        if isinstance(bad[0], str):
            return f"{as_json(bad[0])} is text, not an integer"
        if isinstance(bad[0], float):
            return f"{as_json(bad[0])} is a decimal, not an integer"
        return f"{as_json(bad[0])} is not an integer >= {self.minimum}"


CHOICES = {
    "backbones": Choices(names=tuple(BACKBONES)),
    "augment_levels": Choices(names=AUGMENT_LEVELS),
    "optimizers": Choices(names=OPTIMIZERS),
    "head_widths": Choices(minimum=0),
    "batch_sizes": Choices(minimum=1),
    "class_weighting": Choices(),
}


@dataclass(frozen=True)
class Whole:
    """What one integer field accepts."""

    lowest: int
    highest: int | None = None
    why: str = ""  # the reason for the bounds, when it is not obvious

    def bounds(self) -> str:
        if self.highest is None:
            return f">= {self.lowest}"
        return f"from {self.lowest} to {self.highest}"

    def accepts(self, value: object) -> TypeGuard[int]:
        return is_int(value) and self.lowest <= value <= (self.highest or value)


INTEGERS = {
    # TrialConfig's bounds; the lowest is raised to what every chosen backbone accepts.
    "image_size": Whole(lowest=min(b.min_size for b in BACKBONES.values()), highest=1024),
    "folds": Whole(
        lowest=2, highest=MAX_FOLDS, why=" (a study stores one character per image for its fold)"
    ),
    "epochs": Whole(lowest=1),
    "n_trials": Whole(lowest=1),
    "patience": Whole(lowest=1),
}
# Fields holding one name from a table (not a list of choices: the study has one value).
ONE_OF = {
    "symmetry": ("auto", *SYMMETRIES),
    "colour": ("auto", *COLOURS),
}
TEXTS = {
    "name": 'a study name of 1 to 64 letters, digits, "-", "_" or ".", starting with a letter '
    "or digit",
    "description": "a string",
    "weights": '"imagenet", "none" or the path of a weights file',
}


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def as_int(value: object) -> int | None:
    """``value`` as the integer it spells (32, 32.0, "32"), else None; never a boolean."""
    if is_int(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def as_json(value: object) -> str:
    return json.dumps(value, allow_nan=True)
