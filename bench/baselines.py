"""The simple baseline a user tries first on small images: scikit-learn's SVC on pixels.

``run_svc``: an RBF ``SVC`` on the flattened pixels (one channel where all three are equal, as
for grey images), each pixel standardised or the pixels as they are (0..1), C and gamma chosen
with them by stratified 3-fold cross-validation on the training images only, then refit on all
of them. Standardising every pixel is the textbook step, but it blows up the noise of pixels
that are almost always dark (MNIST's border), so the grid may leave it out. The returned model answers ``predict(images)``
as a Keras model does (one row of class scores per image), so the benchmarks score it the same way.
"""

from __future__ import annotations

import time

import numpy as np

from trainer.records import Dataset

C_GRID = (1.0, 10.0, 100.0)
GAMMA_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # x scikit-learn's "scale": 1 / (n_features * variance)


def pixels(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x F float32 in 0..1; grey images (equal channels) keep one."""
    grey = np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(
        images[..., 0], images[..., 2]
    )
    kept = images[..., :1] if grey else images
    return kept.reshape(len(images), -1).astype(np.float32) / 255.0


class PixelModel:
    """A fitted scikit-learn classifier on ``pixels(images)`` behind Keras' ``predict``."""

    def __init__(self, estimator, n_classes: int) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def predict(self, images: np.ndarray, batch_size: int = 128, verbose: int = 0) -> np.ndarray:
        labels = self.estimator.predict(pixels(np.asarray(images).astype(np.uint8)))
        return np.eye(self.n_classes, dtype=np.float32)[labels]


def run_svc(train: Dataset, seed: int = 0) -> tuple[PixelModel, dict]:
    """Grid-search an RBF SVC on ``train`` (3-fold CV), refit it on all of ``train``."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x = pixels(train.images)
    n = x.shape[1]
    grid = [
        {
            "scale": [StandardScaler()],
            "svc__C": list(C_GRID),
            "svc__gamma": [f / n for f in GAMMA_FACTORS],  # variance 1 after scaling
        },
        {
            "scale": ["passthrough"],
            "svc__C": list(C_GRID),
            "svc__gamma": [f / (n * float(x.var())) for f in GAMMA_FACTORS],
        },
    ]
    search = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="rbf"))]),
        grid,
        cv=StratifiedKFold(3, shuffle=True, random_state=seed),
        n_jobs=1,
        refit=True,
    )
    start = time.monotonic()
    search.fit(x, train.labels)
    best = search.best_params_
    standardised = best["scale"] != "passthrough"
    scale = 1 / n if standardised else 1 / (n * float(x.var()))
    return PixelModel(search.best_estimator_, train.n_classes), {
        "model": (
            f"RBF SVC on {n} {'standardised' if standardised else 'raw (0..1)'} pixels, C "
            f"{best['svc__C']:g}, gamma {best['svc__gamma'] / scale:g} x scale (3-fold CV over "
            f"{len(C_GRID) * len(GAMMA_FACTORS) * 2} settings, {search.best_score_:.4f}), "
            f"refit on all {len(train)}"
        ),
        "cv": float(search.best_score_),
        "search_seconds": round(time.monotonic() - start, 1),
    }
