"""User-supplied spaces: a JSON file of ``Space`` fields, read only when named explicitly.

JSON, not Python: nothing in the file is executed, every key is checked against the ``Space``
fields and every value against its type, and the result is validated like a built-in space.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from spaces.base import Space

_TUPLES = {
    "backbones",
    "augment_levels",
    "optimizers",
    "head_widths",
    "batch_sizes",
    "learning_rate",
    "weight_decay",
    "l2",
    "dropout",
    "label_smoothing",
    "class_weighting",
}


class SpaceFileError(ValueError):
    """The space file cannot be used; the message names the file and the problem."""


def load_space_file(path: str | Path) -> Space:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceFileError(f"space file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpaceFileError(f"space file {path} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpaceFileError(f"space file {path} must hold a JSON object of Space fields")
    fields = {f.name for f in dataclasses.fields(Space)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise SpaceFileError(f"space file {path}: unknown keys {unknown}; valid: {sorted(fields)}")
    for key in ("name", "description", "backbones"):
        if key not in raw:
            raise SpaceFileError(f"space file {path}: missing required key {key!r}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TUPLES:
            if not isinstance(value, list):
                raise SpaceFileError(f"space file {path}: {key} must be a list")
            value = tuple(value)
        elif key == "starting_points":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise SpaceFileError(
                    f"space file {path}: starting_points must be a list of objects"
                )
            value = tuple(value)
        values[key] = value
    try:
        space = Space(**values)
    except (TypeError, ValueError) as exc:
        raise SpaceFileError(f"space file {path}: {exc}") from None
    choices = space.class_weighting
    if (
        not choices
        or not all(isinstance(c, bool) for c in choices)
        or len(set(choices)) < len(choices)
    ):
        raise SpaceFileError(
            f"space file {path}: class_weighting must be a list of distinct true/false values, "
            f"e.g. [false] to never weight classes or [false, true] to search it; got {list(choices)}"
        )
    for pair in ("learning_rate", "weight_decay", "l2", "dropout", "label_smoothing"):
        low, high = getattr(space, pair)
        if not (isinstance(low, int | float) and isinstance(high, int | float) and low <= high):
            raise SpaceFileError(f"space file {path}: {pair} must be [low, high] numbers")
    return space
