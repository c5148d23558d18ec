"""Scores of a model's predictions, as ``search.predict`` reports them (scikit-learn on the
predicted classes): accuracy, balanced accuracy, macro precision/recall/F1 over the classes that
occur in the labels or the predictions, per class, the confusion matrix, and the same model under
each corruption of ``trainer/corruptions.py``; ``predict_probs`` with or without the 8 dihedral
test-time views."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
PREDICT_CHUNK = 512


def dihedral(images: np.ndarray) -> list[np.ndarray]:
    """The 8 dihedral views of N x H x W x 3 square images: rot90 k=0..3, plain and mirrored."""
    views = []
    for flipped in (images, images[:, :, ::-1]):
        views += [np.rot90(flipped, k, axes=(1, 2)) for k in range(4)]
    return views


VIEW_COUNT = {"dihedral": 8, "mirror": 2, "none": 1}  # images a prediction averages over


def view_images(images: np.ndarray, views: str) -> list[np.ndarray]:
    """The images under each view of ``views`` (``trainer.views.VIEWS``): 8, 2 or 1 copies."""
    if views == "dihedral":
        return dihedral(images)
    if views == "mirror":
        return [images, images[:, :, ::-1]]
    return [images]


def predict_probs(
    model: Any, images: np.ndarray, *, tta: bool, batch: int, views: str = "dihedral"
) -> np.ndarray:
    """Softmax probabilities (float64 N x C); with ``tta`` the mean over ``views`` (the model's
    symmetry: 8 dihedral views, the image and its mirror, or the image alone)."""
    views_ = view_images(images, views) if tta else [images]
    per_view = []
    for view in views_:
        parts = [
            model.predict(
                np.ascontiguousarray(view[s : s + PREDICT_CHUNK], dtype=np.float32),
                batch_size=batch,
                verbose=0,
            )
            for s in range(0, len(view), PREDICT_CHUNK)
        ]
        per_view.append(np.concatenate(parts).astype(np.float64))
    return np.mean(per_view, axis=0)


def score(labels: np.ndarray, pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro P/R/F1, per-class report and confusion (sklearn)."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    present = np.union1d(labels, pred)
    p, r, f1, _ = precision_recall_fscore_support(
        labels, pred, labels=present, average="macro", zero_division=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = balanced_accuracy_score(labels, pred)
    report = classification_report(
        labels,
        pred,
        labels=present,
        target_names=[class_names[i] for i in present],
        output_dict=True,
        zero_division=0,
    )
    matrix = confusion_matrix(labels, pred, labels=np.arange(len(class_names)))
    return {
        "n_images": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "macro_f1": float(f1),
        "per_class": report,
        "confusion": {"classes": list(class_names), "matrix": matrix.tolist()},
    }


def robustness(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray | None,
    clean_pred: np.ndarray,
    *,
    tta: bool,
    batch: int,
    seed: int,
    views: str = "dihedral",
    colour: str = "shift",
) -> dict[str, Any]:
    """Accuracy (with labels) and agreement with the clean predictions under each corruption
    (turning and recolouring only as the model's symmetry ``views`` and ``colour`` allow)."""
    from sklearn.metrics import balanced_accuracy_score

    from trainer.corruptions import CORRUPTIONS, corrupt

    per: dict[str, dict[str, float]] = {}
    for i, name in enumerate(CORRUPTIONS, 1):
        changed = corrupt(images, name, seed, symmetry=views, colour=colour)
        pred = predict_probs(model, changed, tta=tta, batch=batch, views=views).argmax(1)
        row = {"agreement": float(np.mean(pred == clean_pred))}
        if labels is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["balanced_accuracy"] = float(balanced_accuracy_score(labels, pred))
            row["accuracy"] = float(np.mean(pred == labels))
        per[name] = row
        log.info(
            "corruption %d/%d: %s", i, len(CORRUPTIONS), name
        )  # progress; the table comes last
    out: dict[str, Any] = {"seed": seed, "tta": tta, "per_corruption": per}
    out["mean_agreement"] = float(np.mean([r["agreement"] for r in per.values()]))
    if labels is not None:
        clean = float(np.mean(clean_pred == labels))
        mean = float(np.mean([r["accuracy"] for r in per.values()]))
        out.update(clean_accuracy=clean, mean_accuracy=mean, accuracy_drop=clean - mean)
    return out


def fmt_row(row: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in row.items())


def summary_text(metrics: dict[str, Any], labels: Any, pred: Any, names: Sequence[str]) -> str:
    lines = [f"{metrics['n_images']} images"]
    if "accuracy" in metrics:
        from sklearn.metrics import classification_report

        present = np.union1d(labels, pred)
        lines.append(
            "accuracy {accuracy:.4f}  balanced accuracy {balanced_accuracy:.4f}  macro "
            "precision {macro_precision:.4f}  recall {macro_recall:.4f}  F1 {macro_f1:.4f}".format(
                **metrics
            )
        )
        lines.append(
            classification_report(
                labels,
                pred,
                labels=present,
                target_names=[names[i] for i in present],
                digits=3,
                zero_division=0,
            )
        )
        width = max(len(n) for n in names)
        matrix = metrics["confusion"]["matrix"]
        lines.append("confusion (rows true, columns predicted):")
        lines.append(" " * (width + 1) + " ".join(f"{n[:5]:>5}" for n in names))
        for name, row in zip(names, matrix, strict=True):
            lines.append(f"{name:>{width}} " + " ".join(f"{v:>5}" for v in row))
    tta = metrics.get("tta")
    if tta:
        if "accuracy_change" in tta:
            lines.append(
                f"TTA ({tta.get('views', 8)} views): accuracy {tta['accuracy_without']:.4f} -> "
                f"{tta['accuracy_with']:.4f} ({tta['accuracy_change']:+.4f}); "
                f"{tta['changed_predictions']:.1%} of predictions changed"
            )
        else:
            lines.append(
                f"TTA ({tta.get('views', 8)} views): {tta['changed_predictions']:.1%} of "
                "predictions changed"
            )
    rob = metrics.get("corruptions")
    if rob:
        lines.append("corruptions (seed {seed}):".format(**rob))
        for name, row in rob["per_corruption"].items():
            lines.append(f"  {name:<20} {fmt_row(row)}")
        if "mean_accuracy" in rob:
            lines.append(
                f"  mean accuracy {rob['mean_accuracy']:.4f} (clean {rob['clean_accuracy']:.4f}, "
                f"drop {rob['accuracy_drop']:+.4f})"
            )
        lines.append(f"  mean agreement with clean predictions {rob['mean_agreement']:.4f}")
    return "\n".join(lines)
