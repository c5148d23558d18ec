"""The model a ``--budget`` run exported, in words, for the report's page and the dashboard's study
note: the study's ``FINAL_RECIPE`` attribute (written by ``search.engine.finish``) and the
symmetry and colour the study was made with. A study without one (no ``--budget`` run yet, or
made before the attribute) has no rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.study import FINAL_RECIPE

# What the model does with each test-time views setting (trainer.views.VIEWS), in a table cell.
VIEWS_TEXT = {
    "dihedral": "the softmax averaged over 8 views: quarter turns, plain and mirrored (8x cost)",
    "mirror": "the softmax averaged over the image and its left-right mirror (2x cost)",
    "none": "one view per image",
}


def final_recipe(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The study's record of its last --budget final model, None without one."""
    recipe = attrs.get(FINAL_RECIPE)
    return dict(recipe) if isinstance(recipe, Mapping) else None


def _augmentation(recipe: Mapping[str, Any]) -> str:
    # The reason names the level first: "robust (paired check ...)", "light, as the trial searched"
    text = str(recipe.get("augment_reason") or recipe.get("augment", "?"))
    tail, progressive = recipe.get("tail"), recipe.get("progressive")
    if tail:
        text += f"; the last {float(tail[1]):.0%} of the epochs {tail[0]}"
    if progressive:
        text += f"; the first {float(progressive[1]):.0%} of the epochs at {progressive[0]} px"
    return text


def _epochs(recipe: Mapping[str, Any]) -> str:
    trained, planned = recipe.get("epochs"), recipe.get("planned_epochs")
    if planned is None or planned == trained:
        return f"{trained} trained"
    return f"{trained} trained (planned {planned}; re-planned from its own epoch times)"


def final_rows(attrs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows of the exported final model, in the order a reader asks; a key the
    recording run did not store is left out, never guessed."""
    recipe = final_recipe(attrs)
    if recipe is None:
        return []
    metric = str(attrs.get("metric", "accuracy"))
    rows: list[tuple[str, str]] = []
    if "folder" in recipe:
        rows.append(("folder", str(recipe["folder"])))
    if "trial" in recipe:
        trial = str(recipe["trial"])
        if "cv_score" in recipe:
            n = int(recipe.get("cv_folds", 0))
            folds = "the 1 finished fold" if n == 1 else f"the {n} finished folds"
            trial += (
                f" (cross-validated {metric} {float(recipe['cv_score']):.4f}, the mean over "
                f"{folds} of each fold's best epoch)"
            )
        rows.append(("trial", trial))
    if "backbone" in recipe:
        rows.append(("backbone", str(recipe["backbone"])))
    if "image_size" in recipe:
        rows.append(
            (
                "input size",
                f"{recipe['image_size']} px (the search trained and scored its trials at "
                f"{attrs.get('image_size', '?')} px)",
            )
        )
    rows.append(("augmentation", _augmentation(recipe)))
    views = str(recipe.get("views", "?"))
    rows.append(
        ("test-time views", f"{views}: {VIEWS_TEXT[views]}" if views in VIEWS_TEXT else views)
    )
    for trait in ("symmetry", "colour"):
        value = recipe.get(trait, attrs.get(trait))
        if value is not None:
            why = attrs.get(f"{trait}_reason") or "as the study was made"
            rows.append((trait, f"{value} ({why})"))
    rows.append(("epochs", _epochs(recipe)))
    return rows
