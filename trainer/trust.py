"""What an exported model needs to be trusted, as numbers fitted on images its weights never
trained on (the calibration slice, ``calibration_slice``): a temperature for its probabilities,
split-conformal scores for prediction sets, an in-domain detector with its threshold, and the
accuracy it keeps when it abstains on its least confident images.

Pure numpy/scipy/scikit-learn: the Keras side (features, logits, baking the temperature into the
model) is ``trainer.readout``.

- Temperature scaling (Guo et al. 2017): one scalar T minimising the negative log-likelihood of
  the calibration slice; softmax(z / T) keeps one view's argmax (a mean over views or members
  of tempered softmaxes can flip a near-tie, so the summary states accuracy at both).
- Split conformal prediction with the LAC score 1 - p_true (Sadinle et al. 2019): the smallest
  mean set size at a marginal coverage of at least the level asked.
- The in-domain detector combines a feature-space nearest-neighbour distance (Sun et al. 2022,
  "Out-of-distribution detection with deep nearest neighbors") with a Mahalanobis distance on
  pixel statistics (colour, exposure, sharpness: what another microscope, stain or camera
  changes and a trained-invariant feature space may not see). Each score is put on the
  calibration slice's scale and the larger counts; the threshold keeps at least
  ``RETAIN`` of in-domain images with probability ``CONFIDENCE`` (the retention of an order
  statistic is Beta distributed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Set before measuring, not tuned (docs/constants.md); bench/trust.py measures them as shipped.
# Share of the data held back from the final model to calibrate it, and its bounds in images.
CALIBRATION_SHARE = 0.1
CALIBRATION_MAX = 300
CALIBRATION_MIN = 20
# The detector's threshold keeps at least RETAIN of in-domain images with this probability.
RETAIN = 0.95
CONFIDENCE = 0.9
# Nearest neighbours for the feature distance (the k-th one's distance is the score), and the
# most training images the export keeps as neighbours.
NEIGHBOURS = 10
BANK_MAX = 4000
# Coverage levels the export states prediction sets and abstention at.
COVERAGES = (0.9, 0.95, 0.99)
ABSTAIN_COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5)


def calibration_slice(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices of the images held back to calibrate: ``CALIBRATION_SHARE`` of each class
    (largest remainders, at most ``CALIBRATION_MAX`` in all, every class keeping an image for
    training), or none when that would be under ``CALIBRATION_MIN`` images."""
    labels = np.asarray(labels)
    total = min(CALIBRATION_MAX, int(round(CALIBRATION_SHARE * len(labels))))
    if total < CALIBRATION_MIN:
        return np.zeros(0, np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * total / len(labels)
    take = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - take))[: total - int(take.sum())]:
        take[k] += 1
    take = np.minimum(take, counts - 1)
    if take.sum() < CALIBRATION_MIN:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng((int(seed), 36))
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=n, replace=False)
        for c, n in zip(classes, take, strict=True)
        if n > 0
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def tempered(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of ``logits`` (... x V x N x C: members and views first) at a temperature:
    each view's softmax of z / T, averaged over every leading axis, as the model averages them."""
    probs = softmax(np.asarray(logits, np.float64) / temperature)
    return probs.reshape(-1, *probs.shape[-2:]).mean(axis=0)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


# The temperature is searched within these bounds: a model more than 3x under- or 10x
# overconfident is outside what one scalar should fix.
TEMPERATURES = (1 / 3, 10.0)


def _best_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        lambda t: nll(tempered(logits, math.exp(t)), labels),
        bounds=tuple(math.log(b) for b in TEMPERATURES),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(found.x))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """The temperature (within ``TEMPERATURES``) with the smallest negative log-likelihood of
    ``labels``; 1.0 when the model makes no mistake on them (the fit would run to its lower
    bound), or when it does not also lower the likelihood on each half of the images when fitted
    on the other half."""
    labels = np.asarray(labels)
    if np.all(tempered(logits, 1.0).argmax(axis=1) == labels):
        return 1.0  # no mistake on the slice: nothing says how overconfident the model is
    order = np.random.default_rng((seed, 40)).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    if min(len(h) for h in halves) < 2:
        return 1.0
    for fit_on, score_on in (halves, halves[::-1]):
        t = _best_temperature(logits[..., fit_on, :], labels[fit_on])
        held, score = logits[..., score_on, :], labels[score_on]
        if nll(tempered(held, t), score) >= nll(tempered(held, 1.0), score):
            return 1.0
    return _best_temperature(logits, labels)


def conformal_threshold(scores: np.ndarray, coverage: float) -> float:
    """Split conformal: the ceil((n + 1) x coverage)-th smallest calibration score (1.0, every
    class, when there are too few scores for that coverage)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be between 0 and 1 (exclusive), got {coverage}")
    ordered = np.sort(np.asarray(scores, np.float64))
    rank = math.ceil((len(ordered) + 1) * coverage)
    return 1.0 if rank > len(ordered) else float(ordered[rank - 1])


def prediction_sets(probs: np.ndarray, threshold: float) -> np.ndarray:
    """N x C booleans: every class whose probability is at least 1 - threshold, and the top one
    (a set is never empty)."""
    member = probs >= 1.0 - threshold - 1e-12
    member[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return member


def set_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The LAC conformity score of each labelled image: 1 - its true class's probability."""
    return 1.0 - probs[np.arange(len(labels)), labels]


def abstention(probs: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    """Accuracy on the most confident images when the model answers only on a share of them
    (``ABSTAIN_COVERAGES``), the rest abstained on."""
    order = np.argsort(-probs.max(axis=1), kind="stable")
    right = probs.argmax(axis=1)[order] == np.asarray(labels)[order]
    rows = []
    for share in ABSTAIN_COVERAGES:
        n = max(1, int(math.ceil(share * len(order))))
        rows.append({"coverage": share, "images": n, "accuracy": float(right[:n].mean())})
    return rows


def retention_rank(n: int, retain: float = RETAIN, confidence: float = CONFIDENCE) -> int:
    """The smallest rank k (1-based) whose order statistic, as a threshold, keeps at least
    ``retain`` of in-domain images with probability ``confidence`` (that retention is
    Beta(k, n + 1 - k)); n when no rank reaches it (``retention_confidence`` says how sure)."""
    from scipy.stats import beta

    for k in range(max(1, math.ceil(retain * (n + 1))), n + 1):
        if beta.sf(retain, k, n + 1 - k) >= confidence:
            return k
    return n


def retention_confidence(n: int, retain: float = RETAIN) -> float:
    """The probability that the threshold of ``retention_rank(n)`` keeps at least ``retain``."""
    from scipy.stats import beta

    k = retention_rank(n, retain)
    return float(beta.sf(retain, k, n + 1 - k))


# Equal-width confidence bins of the expected calibration error (Guo et al. 2017).
BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: its edges, image count, mean top probability and accuracy."""

    edges: np.ndarray  # BINS + 1
    counts: np.ndarray
    confidence: np.ndarray  # nan where a bin is empty
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        used = self.counts > 0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float(np.sum(self.counts[used] / total * gaps))

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> Reliability:
        """The table ``as_dict`` wrote (a report re-draws the diagram from it)."""

        def values(key: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in table[key]], np.float64)

        counts = np.asarray(table["counts"], np.int64)
        return cls(
            np.linspace(0.0, 1.0, len(counts) + 1), counts, values("confidence"), values("accuracy")
        )

    def as_dict(self) -> dict[str, object]:
        def clean(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 4) for v in values]

        return {
            "bins": len(self.counts),
            "counts": [int(c) for c in self.counts],
            "confidence": clean(self.confidence),
            "accuracy": clean(self.accuracy),
        }


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """The reliability table of ``probs`` (N x C, rows summing to 1) against ``labels``."""
    top = probs.max(axis=1)
    right = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, top, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=top, minlength=bins) / counts
        accuracy = np.bincount(which, weights=right, minlength=bins) / counts
    return Reliability(edges, counts, confidence, accuracy)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    return reliability(probs, labels, bins).ece


# Pixel statistics ---------------------------------------------------------------------------


def pixel_statistics(images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """N x 23 numbers about how an image was taken, not what it shows: per RGB channel the mean,
    spread and 5/50/95th percentiles, chromaticity and saturation, and the sharpness (mean
    gradient) at full and half resolution (focus, magnification). In chunks of ``chunk``."""
    parts = [_pixel_statistics(images[i : i + chunk]) for i in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 23))


def _pixel_statistics(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, np.float32) / 255.0
    n = len(x)
    flat = x.reshape(n, -1, 3)
    out = [flat.mean(axis=1), np.log(flat.std(axis=1) + 1e-3)]
    out += list(np.percentile(flat, [5, 50, 95], axis=1))
    total = flat.sum(axis=2, keepdims=True) + 1e-3
    chroma = flat / total
    out += [chroma.mean(axis=1)[:, :2], chroma.std(axis=1)[:, :2]]
    high, low = flat.max(axis=2), flat.min(axis=2)
    sat = (high - low) / (high + 1e-3)
    out.append(np.stack([sat.mean(axis=1), sat.std(axis=1)], axis=1))
    grey = x.mean(axis=3)
    h, w = grey.shape[1] // 2 * 2, grey.shape[2] // 2 * 2
    half = grey[:, :h, :w].reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    out.append(np.stack([np.log(_sharpness(grey)), np.log(_sharpness(half))], axis=1))
    return np.concatenate(out, axis=1).astype(np.float64)


def _sharpness(grey: np.ndarray) -> np.ndarray:
    dy = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
    dx = np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))
    return dx + dy + 1e-4


# Detectors ----------------------------------------------------------------------------------


def normalise(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def knn_distance(bank: np.ndarray, features: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Distance from each (L2-normalised) feature row to its k-th nearest bank row."""
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(k, len(bank)))
    found = NearestNeighbors(n_neighbors=k).fit(normalise(bank))
    distances, _ = found.kneighbors(normalise(features))
    return distances[:, k - 1]


@dataclass(frozen=True)
class Gaussian:
    """One or more Gaussians with a shared (Ledoit-Wolf shrunk) covariance; the score is the
    squared Mahalanobis distance to the nearest mean."""

    means: np.ndarray  # K x D
    precision: np.ndarray  # D x D

    @classmethod
    def fit(cls, x: np.ndarray, groups: np.ndarray | None = None) -> Gaussian:
        from sklearn.covariance import LedoitWolf

        x = np.asarray(x, np.float64)
        groups = np.zeros(len(x), int) if groups is None else np.asarray(groups)
        keys = np.unique(groups)
        means = np.stack([x[groups == g].mean(axis=0) for g in keys])
        centred = x - means[np.searchsorted(keys, groups)]
        cov = LedoitWolf(assume_centered=True).fit(centred)
        return cls(means, cov.precision_)

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        best = np.full(len(x), np.inf)
        for mean in self.means:
            d = x - mean
            best = np.minimum(best, np.einsum("nd,de,ne->n", d, self.precision, d))
        return best


@dataclass(frozen=True)
class Scale:
    """Puts one detector's scores on the calibration slice's scale: 0 at its median, 1 at its
    95th percentile."""

    median: float
    high: float

    @classmethod
    def fit(cls, scores: np.ndarray) -> Scale:
        median, high = np.percentile(scores, [50, 95])
        return cls(float(median), float(max(high, median + 1e-9)))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, np.float64) - self.median) / (self.high - self.median)


def threshold_for(scores: np.ndarray) -> float:
    """The in-domain threshold on calibration ``scores``: the order statistic of
    ``retention_rank`` (scores above it are flagged)."""
    ordered = np.sort(np.asarray(scores, np.float64))
    return float(ordered[retention_rank(len(ordered)) - 1])


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an outside image scores higher than an inside one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    if not len(inside) or not len(outside):
        raise ValueError("AUROC needs images on both sides")
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(truth, np.r_[inside, outside]))


def as_json(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
