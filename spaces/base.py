"""What a space is: a table of choices and one sampling function over a ``Suggester``.

A space never imports Optuna: ``optuna.Trial`` and ``optuna.trial.FixedTrial`` both satisfy the
``Suggester`` protocol, and so does the tiny ``FakeSuggester`` shipped here for tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trainer.config import (
    BACKBONES,
    COLOURS,
    SYMMETRIES,
    TrialConfig,
    is_pretrained,
    starts_pretrained,
)


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...


@dataclass(frozen=True)
class StudySettings:
    """What the command line fixes for every trial of a study."""

    epochs: int
    weights: str
    seed: int
    image_size: int
    precision: str = "float32"
    jit_compile: bool = False
    backend: str = "tensorflow"
    weights_dir: str = ""  # --weights-dir, resolved; travels in every trial's configuration
    symmetry: str = "dihedral"  # the study's, resolved (never "auto"): trainer.config.SYMMETRIES
    colour: str = "shift"  # the study's, resolved: trainer.config.COLOURS
    start_backbone: str = ""  # --weights DIR: the export's backbone, which the weights fit


@dataclass(frozen=True)
class Space:
    """Choices for one study; ``sample`` turns a suggester into a validated ``TrialConfig``."""

    name: str
    description: str
    backbones: tuple[str, ...]
    # Defaults set before measuring, not tuned (docs/constants.md).
    image_size: int = 96
    folds: int = 5
    epochs: int = 15
    n_trials: int = 40
    weights: str = "imagenet"  # default --weights for this space
    augment_levels: tuple[str, ...] = ("none", "light", "moderate", "heavy", "robust")
    optimizers: tuple[str, ...] = ("adam", "adamw", "lion", "ranger")
    learning_rate: tuple[float, float] = (1e-4, 3e-3)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    l2: tuple[float, float] = (1e-6, 1e-3)
    dropout: tuple[float, float] = (0.0, 0.5)
    head_widths: tuple[int, ...] = (0, 128, 256)
    batch_sizes: tuple[int, ...] = (16, 32, 64)
    label_smoothing: tuple[float, float] = (0.0, 0.2)
    class_weighting: tuple[bool, ...] = (False, True)
    patience: int = 4
    # What augmentation may change: "auto" (measured on the data before the first trial), or a
    # declared trainer.config.SYMMETRIES / COLOURS value; search.run --symmetry / --colour win.
    symmetry: str = "auto"
    colour: str = "auto"
    starting_points: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        unknown = [b for b in self.backbones if b not in BACKBONES]
        if unknown:
            raise ValueError(f"space {self.name!r} names unknown backbones {unknown}")
        if self.symmetry not in ("auto", *SYMMETRIES):
            raise ValueError(
                f"space {self.name!r}: symmetry {self.symmetry!r} is not one of auto, "
                + ", ".join(SYMMETRIES)
            )
        if self.colour not in ("auto", *COLOURS):
            raise ValueError(
                f"space {self.name!r}: colour {self.colour!r} is not one of auto, "
                + ", ".join(COLOURS)
            )

    def sample(self, s: Suggester, settings: StudySettings) -> TrialConfig:
        """Draw one configuration; unfreeze depth is conditional on the chosen backbone."""
        backbone = s.suggest_categorical("backbone", self.backbones)
        info = BACKBONES[backbone]
        weights = (
            settings.weights
            if starts_pretrained(info, settings.weights, settings.start_backbone)
            else "none"
        )
        if is_pretrained(weights):
            depth = s.suggest_int(f"unfreeze_{backbone}", 0, info.n_blocks)
        else:
            depth = info.n_blocks  # from scratch everything trains
        return TrialConfig(
            backbone=backbone,
            image_size=settings.image_size,
            weights=weights,
            weights_dir=settings.weights_dir if weights == "imagenet" else "",
            unfreeze_depth=depth,
            augment=s.suggest_categorical("augment", self.augment_levels),
            symmetry=settings.symmetry,
            colour=settings.colour,
            optimizer=s.suggest_categorical("optimizer", self.optimizers),
            learning_rate=s.suggest_float("learning_rate", *self.learning_rate, log=True),
            weight_decay=s.suggest_float("weight_decay", *self.weight_decay, log=True),
            l2=s.suggest_float("l2", *self.l2, log=True),
            dropout=s.suggest_float("dropout", *self.dropout),
            head_width=s.suggest_categorical("head_width", self.head_widths),
            batch_size=s.suggest_categorical("batch_size", self.batch_sizes),
            label_smoothing=s.suggest_float("label_smoothing", *self.label_smoothing),
            class_weighting=s.suggest_categorical("class_weighting", self.class_weighting),
            epochs=settings.epochs,
            patience=self.patience,
            seed=settings.seed,
            precision=settings.precision,
            jit_compile=settings.jit_compile,
            backend=settings.backend,
        )

    def starting_params(self, settings: StudySettings) -> list[dict[str, Any]]:
        """Known-good configurations to enqueue first, limited to params this study samples."""
        out = []
        for point in self.starting_points:
            backbone = point["backbone"]
            if backbone not in self.backbones:
                continue
            params = dict(point)
            pretrained = starts_pretrained(
                BACKBONES[backbone], settings.weights, settings.start_backbone
            )
            depth_key = f"unfreeze_{backbone}"
            if not pretrained:
                params.pop(depth_key, None)
            elif depth_key not in params:
                params[depth_key] = min(2, BACKBONES[backbone].n_blocks)
            out.append(params)
        return out


class FakeSuggester:
    """Answers every suggestion from a dict, else the first choice / the low end; logs calls."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})
        self.asked: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.asked[name] = tuple(choices)
        value = self.values.get(name, choices[0])
        if value not in choices:
            raise ValueError(f"{name}={value!r} not in {list(choices)}")
        return value

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        self.asked[name] = (low, high)
        value = int(self.values.get(name, low))
        if not low <= value <= high:
            raise ValueError(f"{name}={value} not in [{low}, {high}]")
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.asked[name] = (low, high)
        value = float(self.values.get(name, low))
        if not low <= value <= high:
            raise ValueError(f"{name}={value} not in [{low}, {high}]")
        return value
