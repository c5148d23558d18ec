"""What one ``search.run`` command asks for: the engine's input, never argparse's Namespace.

``search.run`` parses and checks the flags and builds one frozen ``RunRequest``; the session's
stages read its named fields. The field names are the flags' (``--n-trials`` -> ``n_trials``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunRequest:
    """One search: where, on what, how long, and how the final model is made."""

    data: str = "demo"
    storage: str = "sqlite:///studies.db"
    name: str | None = None
    seed: int = 0
    # The search.
    n_trials: int | None = None
    budget: float | None = None  # seconds, search and final model together
    timeout: float | None = None
    folds: int | None = None
    epochs: int | None = None
    image_size: int | None = None
    metric: str | None = None
    objective: str | None = None  # "accuracy", "accuracy,latency" or "accuracy,params"
    max_latency_ms: float | None = None  # the --budget final model's limit on the front
    max_params: int | None = None
    weights: str | None = None
    weights_dir: str | None = None
    symmetry: str | None = None
    colour: str | None = None
    clean: bool = False
    pruner: str = "default"
    sampler: str = "tpe"
    warm_start: tuple[str, ...] = ()  # earlier studies: NAME or NAME@URL
    portfolio: bool = True  # queue the space's start-up configurations (--no-portfolio: not)
    trainer: str = "keras"
    # Workers and devices.
    workers: int | None = None
    gpus: str | None = None
    workers_per_gpu: int = 1
    gpu_memory_mb: int | None = None
    precision: str = "auto"
    backend: str = "tensorflow"
    xla: str = "auto"
    max_failures: int = 5
    trial_timeout: float | None = None
    heartbeat: float = 20.0
    artifacts: str | None = None
    # The --budget final model.
    export: str | None = None
    final_augment: str = "auto"
    tta: bool | None = None
    quiet: bool = False

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> RunRequest:
        """The request from parsed flags (``vars(namespace)``); other keys are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in values.items() if k in names}
        given["warm_start"] = tuple(given.get("warm_start") or ())
        return cls(**given)

    def limits(self) -> dict[str, float | None]:
        """--max-latency-ms and --max-params by the cost each limits."""
        return {"latency": self.max_latency_ms, "params": self.max_params}
