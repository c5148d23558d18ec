"""User-supplied spaces: a JSON file of ``Space`` fields, read only when named explicitly.

JSON, not Python: nothing in the file is executed, every key is checked against the ``Space``
fields and every value against what a study can use, so a bad file is refused on load with one
message naming the field, what was given, what is valid and an example fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spaces.base import Space, StudySettings
from spaces.rules import (
    CHOICES,
    INTEGERS,
    NAME,
    ONE_OF,
    RANGES,
    TEXTS,
    Whole,
    as_int,
    as_json,
    is_int,
    is_number,
)
from trainer.config import BACKBONES, InvalidConfig


class SpaceFileError(ValueError):
    """The space file cannot be used; the message names the file and the problem."""


def load_space_file(path: str | Path) -> Space:
    """The ``Space`` a JSON file describes, every field checked; else one SpaceFileError."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceFileError(f"space file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpaceFileError(f"space file {path} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpaceFileError(f"space file {path} must hold a JSON object of Space fields")
    fields = [f.name for f in dataclasses.fields(Space)]  # in order: backbones before image_size
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SpaceFileError(
            f"space file {path}: unknown keys {unknown}{_did_you_mean(unknown, fields)}; "
            f"valid: {sorted(fields)}"
        )
    for key in ("name", "description", "backbones"):
        if key not in raw:
            raise SpaceFileError(f"space file {path}: missing required key {key!r}")
    values: dict[str, Any] = {}
    for key in fields:
        if key in raw and key != "starting_points":  # checked against the finished space
            values[key] = _check_field(path, key, raw[key], values)
    try:
        space = Space(**values)
    except (TypeError, ValueError) as exc:
        raise SpaceFileError(f"space file {path}: {exc}") from None
    sampled = _sampled(path, space)
    if "starting_points" in raw:
        points = _check_starting_points(path, raw["starting_points"], sampled)
        space = dataclasses.replace(space, starting_points=points)
    return space


def _check_field(path: Path, key: str, value: object, checked: dict[str, Any]) -> Any:
    """``value`` as ``Space`` stores field ``key``; ``checked`` holds the fields before it."""
    if key in RANGES:
        return _check_range(path, key, value)
    if key in CHOICES:
        return _check_choices(path, key, value)
    if key in INTEGERS:
        rule = INTEGERS[key]
        if key == "image_size":
            lowest = max(BACKBONES[b].min_size for b in checked["backbones"])
            rule = dataclasses.replace(rule, lowest=lowest)
        return _check_integer(path, key, value, rule)
    if key in TEXTS:
        return _check_text(path, key, value)
    if key in ONE_OF:
        if isinstance(value, str) and value in ONE_OF[key]:
            return value
        raise SpaceFileError(
            f"space file {path}: {key} must be one of {', '.join(ONE_OF[key])}, e.g. "
            f'"auto" (decided from the data); got {as_json(value)}'
        )
    raise NotImplementedError(f"spaces/file.py has no check for Space.{key}")


def _check_range(path: Path, key: str, value: object) -> tuple[float, float]:
    """``value`` as a (low, high) pair a study can sample, or a SpaceFileError saying the fix.

    ``low == high`` is allowed: it fixes the value, as a single-valued choice does."""
    rule, default = RANGES[key], getattr(Space, key)  # the built-in default, as an example
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise SpaceFileError(
            f"space file {path}: {key} must be a [low, high] pair of numbers, e.g. "
            f"{as_json(default)}; got {as_json(value)}"
        )
    low, high = value
    given = f"space file {path}: {key} is {as_json(value)}"
    if rule.log and min(low, high) <= 0:
        example = [default[0], high] if 0 < default[0] < high else list(default)
        raise SpaceFileError(
            f"{given}, but it is sampled on a log scale, so both ends must be above 0: "
            f"e.g. {as_json(example)}"
        )
    lowest = min(low, high)
    too_low = lowest < rule.lowest if rule.closed_low else lowest <= rule.lowest
    if too_low or max(low, high) >= rule.below:
        raise SpaceFileError(
            f"{given}, but each end must be in {rule.bounds()}: e.g. {as_json(default)}"
        )
    if low > high:
        raise SpaceFileError(f"{given}, but low must be below high: write {as_json([high, low])}")
    return low, high


def _check_choices(path: Path, key: str, value: object) -> tuple[Any, ...]:
    """``value`` as a non-empty tuple of distinct choices, or a SpaceFileError saying the fix."""
    kind = CHOICES[key]
    items = value if isinstance(value, list) else [value]
    guesses = [kind.guess(v) for v in items]
    if items and None not in guesses:  # what the file most likely meant, else the default
        example = list(dict.fromkeys(guesses))
    else:
        example = list(getattr(Space, key, kind.names[:1]))
    reason = ""
    if isinstance(value, list) and value:
        if not all(kind.accepts(v) for v in value):
            reason = f" ({kind.problem(key, value)})"
        else:
            twice = [v for i, v in enumerate(value) if v in value[:i]]
            if not twice:
                return tuple(value)
            reason = f" ({as_json(twice[0])} appears twice)"
    raise SpaceFileError(
        f"space file {path}: {key} must be a list of distinct {kind.noun()} (at least one), "
        f"e.g. {as_json(example)}; got {as_json(value)}{reason}"
    )


def _check_integer(path: Path, key: str, value: object, rule: Whole) -> int:
    """``value`` as an integer within ``rule``; JSON true is not 1."""
    if rule.accepts(value):
        return value
    guess = as_int(value)
    example = guess if rule.accepts(guess) else getattr(Space, key)
    reason = f" ({as_json(value)} is a boolean, not an integer)" if isinstance(value, bool) else ""
    raise SpaceFileError(
        f"space file {path}: {key} must be an integer {rule.bounds()}{rule.why}, "
        f"e.g. {example}; got {as_json(value)}{reason}"
    )


def _check_text(path: Path, key: str, value: object) -> str:
    """``name`` (safe to type and store as a study name), ``description`` or ``weights``."""
    if key == "name":
        if isinstance(value, str) and NAME.fullmatch(value):
            return value
        text = "" if value is None else str(value)
        example = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:64] or "my-space"
    elif key == "description":
        if isinstance(value, str):
            return value
        example = "what this space searches" if value is None else str(value)
    else:
        named = str(value).lower() in ("imagenet", "none")  # "ImageNet" would read as a path
        if isinstance(value, str) and value.strip() and (value.islower() or not named):
            return value
        example = str(value).lower() if named else Space.weights
    raise SpaceFileError(
        f"space file {path}: {key} must be {TEXTS[key]}, e.g. {as_json(example)}; got {as_json(value)}"
    )


_Asked = dict[str, tuple[str, tuple[Any, ...]]]  # parameter -> (suggest kind, choices or bounds)


class _Recorder:
    """A ``Suggester`` recording what ``Space.sample`` asks, and how: what a starting point sets."""

    def __init__(self, backbone: str) -> None:
        self.backbone = backbone
        self.asked: _Asked = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.asked[name] = ("categorical", tuple(choices))
        return self.backbone if name == "backbone" else choices[0]

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        self.asked[name] = ("int", (low, high))
        return low

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.asked[name] = ("float", (low, high))
        return low


def _sampled(path: Path, space: Space) -> dict[str, _Asked]:
    """What ``space.sample`` asks for with each backbone, pretrained (so unfreeze depths count)."""
    settings = StudySettings(
        epochs=space.epochs, weights="imagenet", seed=0, image_size=space.image_size
    )
    out = {}
    for backbone in space.backbones:
        recorder = _Recorder(backbone)
        try:
            space.sample(recorder, settings)
        except InvalidConfig as exc:
            raise SpaceFileError(f"space file {path}: the space samples an {exc}") from None
        out[backbone] = recorder.asked
    return out


def _check_starting_points(
    path: Path, value: object, sampled: dict[str, _Asked]
) -> tuple[dict[str, Any], ...]:
    """Each point as a trial to enqueue: only parameters the space samples, each in its choices."""
    first = next(iter(sampled))
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        batch = sampled[first]["batch_size"][1][0]
        example = [value] if isinstance(value, dict) else [{"backbone": first, "batch_size": batch}]
        raise SpaceFileError(
            f"space file {path}: starting_points must be a list of objects, each the parameters "
            f"of one trial to run first, e.g. {as_json(example)}; got {as_json(value)}"
        )
    for i, point in enumerate(value):
        where = f"space file {path}: starting_points[{i}]"
        if "backbone" not in point:
            raise SpaceFileError(
                f'{where} must name its "backbone", one of the space\'s backbones '
                f"{as_json(list(sampled))}, e.g. {as_json({'backbone': first, **point})}; "
                f"got {as_json(point)}"
            )
        _check_param(where, "backbone", point["backbone"], sampled[first]["backbone"])
        asked = sampled[point["backbone"]]
        unknown = sorted(set(point) - set(asked))
        if unknown:
            raise SpaceFileError(
                f"{where} has keys the space does not sample: {unknown}"
                f"{_did_you_mean(unknown, list(asked))}; valid for backbone "
                f"{point['backbone']}: {sorted(asked)}"
            )
        for key, given in point.items():
            _check_param(where, key, given, asked[key])
    return tuple(dict(p) for p in value)


def _check_param(where: str, key: str, value: object, asked: tuple[str, tuple[Any, ...]]) -> None:
    """One starting-point value against what the space suggests for it; JSON true is not 1."""
    kind, options = asked
    if kind == "categorical":
        if any(type(value) is type(c) and value == c for c in options):
            return
        example = next(
            (c for c in options if c == value or str(c).lower() == str(value).lower()), options[0]
        )
        valid = f"one of the space's choices {as_json(list(options))}"
    else:
        low, high = options
        example = low
        if is_number(value):
            if low <= value <= high and (kind == "float" or is_int(value)):
                return
            example = min(max(value, low), high)
            example = round(example) if kind == "int" else example
        number = "an integer in" if kind == "int" else "a number in the space's range"
        valid = f"{number} {as_json([low, high])}"
    raise SpaceFileError(
        f"{where}.{key} must be {valid}, e.g. {as_json(example)}; got {as_json(value)}"
    )


def _did_you_mean(unknown: list[str], valid: Sequence[str]) -> str:
    """`` (did you mean 'batch_sizes'?)`` for keys that look like a valid one, else ``""``."""
    close = [repr(m[0]) for u in unknown if (m := difflib.get_close_matches(u, valid, n=1))]
    return f" (did you mean {', '.join(close)}?)" if close else ""
