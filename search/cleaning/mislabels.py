"""Likely mislabels: out-of-fold predictions of a quick model that confidently disagree.

The model is a multinomial logistic regression on ``class_features`` (ring colour/texture profile
around the centre and an optical-density histogram; about 92% accurate on the real blood-cell images
the project tests with), scored by stratified k-fold so no image is judged by a model that saw it.
An image is flagged when the model gives its label a probability below ``max_label_prob`` and
another class at least ``confidence``. Single-threaded; a few seconds for 3,200 images.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from search.cleaning.features import class_features

log = logging.getLogger(__name__)

# LogisticRegression C: the recall side of the precision/recall trade-off (flags are reviewed, not
# removed); bench/cleaning_constants.py, docs/constants.md.
REGULARISATION = 0.1


def out_of_fold_proba(
    features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int, seed: int
) -> np.ndarray | None:
    """N x n_classes out-of-fold class probabilities, or None when a class is too small.

    Uses ``min(folds, smallest class size)`` folds; needs at least 2 images in every class
    that has any and at least 2 such classes.
    """
    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    k = min(folds, int(present.min())) if present.size else 0
    if present.size < 2 or k < 2:
        return None
    proba = np.zeros((labels.shape[0], n_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION, max_iter=500))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features[train], labels[train])
        classes = model.classes_
        proba[np.ix_(test, classes)] = model.predict_proba(features[test])
    return proba


def mislabel_proba(
    images: np.ndarray, labels: np.ndarray, n_classes: int, folds: int, seed: int
) -> np.ndarray | None:
    """Out-of-fold probabilities for ``images`` (see ``out_of_fold_proba``)."""
    return out_of_fold_proba(class_features(images), labels, n_classes, folds, seed)


def flag(
    proba: np.ndarray, labels: np.ndarray, confidence: float, max_label_prob: float
) -> np.ndarray:
    """Mask: the label gets below ``max_label_prob`` and another class at least ``confidence``."""
    p_label = proba[np.arange(labels.shape[0]), labels]
    other = proba.copy()
    other[np.arange(labels.shape[0]), labels] = -1.0
    return (p_label < max_label_prob) & (other.max(axis=1) >= confidence)
