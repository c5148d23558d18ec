"""``--warm-start``: a new study starts from the best configurations of earlier ones.

Each earlier study is named ``NAME`` (in this run's storage) or ``NAME@URL`` (in another). Its
best complete trials, best first, are fitted to this study's space (parameters the space does not
sample are dropped, numbers outside its ranges are clipped, a backbone it does not search skips the
configuration) and queued ahead of the space's own starting points. They are trained and scored on
the new data like any trial: nothing is carried over but the configuration, so the earlier
study's best is the new study's first trial, never its answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna

from search.cli import UsageError
from spaces.base import Space, StudySettings
from storage import find_storage, redact, storage_errors
from storage.records import ranked_complete, score
from trainer.errors import InvalidConfig

log = logging.getLogger(__name__)

TOP = 3  # configurations taken from each earlier study, best first (set before measuring)


@dataclass(frozen=True)
class WarmPoint:
    """One earlier configuration, fitted to this study's space."""

    params: dict[str, Any]
    origin: str  # "study#trial"
    value: float
    notes: tuple[str, ...] = ()  # what fitting changed


def split_spec(spec: str, default_url: str) -> tuple[str, str]:
    """``NAME`` or ``NAME@URL`` -> (name, storage URL); the URL's own ``@`` stays in the URL."""
    name, at, url = spec.partition("@")
    if not name:
        raise UsageError(f"--warm-start {spec!r}: give a study name, NAME or NAME@URL")
    return name, (url if at else default_url)


def read_points(
    specs: tuple[str, ...], default_url: str, space: Space, settings: StudySettings
) -> tuple[WarmPoint, ...]:
    """The configurations to queue first, best of each earlier study first; UsageError when an
    earlier study is missing, has no complete trial, or none of its best fits this space."""
    points: list[WarmPoint] = []
    for spec in specs:
        name, url = split_spec(spec, default_url)
        study = _load(name, url, spec)
        ranked = ranked_complete(study)
        if not ranked:
            raise UsageError(
                f"--warm-start {spec}: study {name!r} has no complete trial to start from"
            )
        fitted, refused = [], []
        for trial in ranked[:TOP]:
            params, notes = fit(trial.params, space, settings)
            if params is None:
                refused.append(f"trial {trial.number}: {notes[0]}")
                continue
            fitted.append(
                WarmPoint(params, f"{name}#{trial.number}", float(score(trial) or 0.0), notes)
            )
        if not fitted:
            raise UsageError(
                f"--warm-start {spec}: none of study {name!r}'s best configurations fits "
                f"space {space.name!r} ({'; '.join(refused)}); pick a study of the same "
                "backbones, or another --study"
            )
        points += fitted
    return tuple(points)


def _load(name: str, url: str, spec: str) -> optuna.Study:
    with storage_errors(url):
        storage = find_storage(url, heartbeat_interval=None, grace_period=None)
        names = optuna.get_all_study_names(storage) if storage is not None else []
        if storage is None or name not in names:
            where = f"in {redact(url)}" if storage is not None else f"at {redact(url)}"
            there = f"; studies there: {', '.join(sorted(names))}" if names else ""
            raise UsageError(
                f"--warm-start {spec}: no study {name!r} {where}{there}; pass NAME for a study "
                "in --storage, or NAME@URL for one in another database"
            )
        return optuna.load_study(study_name=name, storage=storage)


def fit(
    params: dict[str, Any], space: Space, settings: StudySettings
) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """``params`` as this space samples them, and what changed; None (with the reason first)
    when its backbone is not searched here or the space refuses it."""
    answer = _Fit(params)
    try:
        space.sample(answer, settings)
    except (ValueError, InvalidConfig) as exc:
        return None, (str(exc), *answer.notes)
    if answer.refused:
        return None, tuple(answer.notes)
    return answer.fitted, tuple(answer.notes)


_MISSING = object()


class _Fit:
    """A suggester that answers from an earlier trial's parameters, fitted to this space."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.fitted: dict[str, Any] = {}
        self.notes: list[str] = []
        self.refused = False

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self.params.get(name, _MISSING)
        if value in choices:
            self.fitted[name] = value
            return value
        if value is not _MISSING:
            if name == "backbone":
                self.refused = True
                self.notes.insert(0, f"backbone {value} is not searched here")
            else:
                self.notes.append(f"{name}={value!r} is not a choice here: sampled instead")
        return choices[0]

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return self._number(name, low, high, float)

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        return int(self._number(name, low, high, int))

    def _number(self, name: str, low: Any, high: Any, kind: Any) -> Any:
        value = self.params.get(name, _MISSING)
        if value is _MISSING or isinstance(value, bool) or not isinstance(value, (int, float)):
            if value is not _MISSING:
                self.notes.append(f"{name}={value!r} is not a number: sampled instead")
            return low
        clipped = kind(min(max(value, low), high))
        if clipped != value:
            self.notes.append(f"{name} {value:g} clipped to {clipped:g}")
        self.fitted[name] = clipped
        return clipped
