"""Validation metrics from predicted probabilities (numpy + scikit-learn, no TensorFlow)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, n_classes: int
) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy, balanced accuracy, macro precision/recall/F1 and cross-entropy; plus confusion.

    Classes absent from both labels and predictions count as zero for the macro averages'
    precision (sklearn's ``zero_division=0``), so a collapsed model scores low, never NaN.
    """
    labels = np.asarray(labels, dtype=np.int64)
    pred = probs.argmax(axis=1)
    classes = np.arange(n_classes)
    p, r, f1, _ = precision_recall_fscore_support(
        labels, pred, labels=classes, average="macro", zero_division=0
    )
    eps = 1e-7
    picked = np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)
    present = np.unique(labels)
    metrics = {
        "accuracy": float(np.mean(pred == labels)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred))
        if len(present) > 1
        else float(np.mean(pred == labels)),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "macro_f1": float(f1),
        "loss": float(-np.mean(np.log(picked))),
    }
    return metrics, confusion_matrix(labels, pred, labels=classes)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """w_j = N / (C * n_j), then scaled so the mean over classes is 1 (absent classes get 0)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.zeros(n_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = len(labels) / (n_classes * counts[present])
    weights[present] /= weights[present].mean()
    return weights.astype(np.float32)
