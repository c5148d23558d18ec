"""Creating or re-opening a study, and checking a resume matches what the study was made with.

Everything here runs before the first write: a refused resume leaves the study as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from trainer.folds import decode_folds, encode_folds

__all__ = [
    "FINAL_CHECK",
    "FINAL_RECIPE",
    "ResumeRefused",
    "StudyPlan",
    "check_resume",
    "decode_folds",
    "encode_folds",
]

# Study user attribute: the last --budget final model, its recipe, folder and input size
# (written by search.engine.finish, shown by search.reporting).
FINAL_RECIPE = "final_recipe"
# Study user attribute: the last paired check (its trial, epochs and evidence), so a --budget run
# interrupted after it does not run it again (search.engine.finish).
FINAL_CHECK = "final_check"


class ResumeRefused(ValueError):
    """A resume whose settings or data differ from the study's (the command exits 2)."""


@dataclass(frozen=True)
class StudyPlan:
    """The facts a study is created with; a resume must agree with every one of them."""

    space: str
    data: str
    fingerprint: str
    n_images: int
    class_names: tuple[str, ...]
    folds: int
    fold_seed: int
    epochs: int
    image_size: int
    metric: str
    weights: str
    image_size_fixed: bool = False  # --image-size given: the final model keeps that size too
    objective: str = "accuracy"  # --objective: "accuracy", or "accuracy,latency" / ",params"
    # The study's symmetry and colour with their reasons and evidence (search.policy.traits).
    traits: dict[str, Any] = field(default_factory=dict)

    def attrs(self, fold_of: str) -> dict[str, Any]:
        return {
            **self.traits,
            "space": self.space,
            "data": self.data,
            "data_fingerprint": self.fingerprint,
            "n_images": self.n_images,
            "class_names": list(self.class_names),
            "folds": self.folds,
            "fold_seed": self.fold_seed,
            "epochs": self.epochs,
            "image_size": self.image_size,
            "metric": self.metric,
            "objective": self.objective,
            "weights": self.weights,
            "image_size_fixed": self.image_size_fixed,
            "fold_of": fold_of,
        }


def load_existing(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def check_resume(stored: dict[str, Any], plan: StudyPlan, name: str) -> None:
    """Refuse a resume whose fixed settings or data differ from the study's.

    Settings first: a different --image-size also changes the resized data's fingerprint, and
    the flag is what the user has to change back."""
    for key in ("space", "folds", "epochs", "image_size", "metric", "objective", "weights"):
        value = getattr(plan, key)
        if key in stored and stored[key] != value:
            if key == "space":
                raise ResumeRefused(
                    f"study {name!r} was created with --study {stored[key]}, not {value}; "
                    f"resume it with --study {stored[key]}, or name a new study with --name"
                )
            flag = {"image_size": "image-size"}.get(key, key)
            raise ResumeRefused(
                f"study {name!r} was created with --{flag} {stored[key]}, not {value}; "
                f"resume with the same value (or leave the flag out), or use a new --name"
            )
    if stored.get("data_fingerprint") not in (None, plan.fingerprint):
        raise ResumeRefused(
            f"study {name!r} was created with different data ({stored.get('data')!r}, "
            f"{stored.get('n_images')} images, fingerprint {str(stored['data_fingerprint'])[:12]}); "
            f"--data {plan.data!r} has {plan.n_images} images, fingerprint {plan.fingerprint[:12]}. "
            "Pass the same data to resume, or use a new --name for a new study"
        )
