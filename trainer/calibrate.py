"""Calibrate a trained model on its calibration slice and fit its in-domain detector, then read
both back to score new images. The numbers live in ``trust.npz`` beside the model; the
temperature is also baked into the model (``Reader.temper``), so its own output is calibrated.

``fit`` returns the ``Trust`` record and a JSON summary with its evidence: ECE before and after
(after: fitted on one half of the slice, scored on the other, both ways), prediction-set sizes
and coverage, accuracy when abstaining, and the detector's threshold with the share of the
slice it keeps and of shifted copies of the slice it flags (``trainer.shifts``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer import trust
from trainer.readout import Reader

log = logging.getLogger(__name__)

FILE = "trust.npz"
FORMAT = 1
# One image's forward pass against one training step's, per image (roughly a third on CPU).
INFERENCE_COST = 0.35


def cost_in_epochs(n_train: int, n_calibration: int, views: int) -> float:
    """What ``fit`` costs in training epochs of ``n_train`` images: a forward pass over every
    training image (the neighbours), every view of the slice, and the slice under each shift."""
    from trainer.shifts import SHIFTS

    if not n_calibration or not n_train:
        return 0.0
    images = min(n_train, trust.BANK_MAX) + n_calibration * (views + len(SHIFTS))
    return INFERENCE_COST * images / n_train


@dataclass(frozen=True)
class Trust:
    """What ``trust.npz`` holds."""

    temperature: float
    set_scores: np.ndarray  # the calibration slice's LAC scores (calibrated probabilities)
    bank: np.ndarray  # training images' pooled features (float16), the neighbours
    feature_scale: trust.Scale
    pixels: trust.Gaussian
    pixel_scale: trust.Scale
    threshold: float  # domain_score above it: unlike the training images
    neighbours: int = trust.NEIGHBOURS

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "format": np.array(FORMAT),
            "temperature": np.array(self.temperature),
            "set_scores": self.set_scores,
            "bank": self.bank.astype(np.float16),
            "feature_scale": np.array([self.feature_scale.median, self.feature_scale.high]),
            "pixel_means": self.pixels.means,
            "pixel_precision": self.pixels.precision,
            "pixel_scale": np.array([self.pixel_scale.median, self.pixel_scale.high]),
            "threshold": np.array(self.threshold),
            "neighbours": np.array(self.neighbours),
        }

    @classmethod
    def from_arrays(cls, a: Any) -> Trust:
        if int(a["format"]) != FORMAT:
            raise ValueError(f"trust file format {int(a['format'])}, this version reads {FORMAT}")
        return cls(
            temperature=float(a["temperature"]),
            set_scores=np.asarray(a["set_scores"], np.float64),
            bank=np.asarray(a["bank"], np.float32),
            feature_scale=trust.Scale(*(float(v) for v in a["feature_scale"])),
            pixels=trust.Gaussian(np.asarray(a["pixel_means"]), np.asarray(a["pixel_precision"])),
            pixel_scale=trust.Scale(*(float(v) for v in a["pixel_scale"])),
            threshold=float(a["threshold"]),
            neighbours=int(a["neighbours"]),
        )

    def detectors(self, features: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
        """Each detector's raw score (higher: less like the training images)."""
        return {
            "knn": trust.knn_distance(self.bank, features, self.neighbours),
            "pixels": self.pixels.score(trust.pixel_statistics(images)),
        }

    def domain_score(self, features: np.ndarray, images: np.ndarray) -> np.ndarray:
        """The larger of the two detectors, each on the calibration slice's scale (0 at its
        median, 1 at its 95th percentile)."""
        raw = self.detectors(features, images)
        return np.maximum(self.feature_scale(raw["knn"]), self.pixel_scale(raw["pixels"]))

    def sets(self, probs: np.ndarray, coverage: float) -> np.ndarray:
        return trust.prediction_sets(probs, trust.conformal_threshold(self.set_scores, coverage))


def load(folder: Path) -> Trust | None:
    """The folder's trust record, None when it has none (exported before calibration existed,
    or from too few images); ValueError when the file is unreadable."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as arrays:
            return Trust.from_arrays(arrays)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"cannot read {path} ({exc})") from exc


def fit(
    model: Any,
    views: str,
    images: np.ndarray,
    labels: np.ndarray,
    train_index: np.ndarray,
    calibration_index: np.ndarray,
    *,
    seed: int = 0,
    batch: int = 128,
) -> tuple[Trust, dict[str, Any]]:
    """Calibrate ``model`` (with ``views`` built in) on the images at ``calibration_index``,
    which its weights never trained on, fit the detector on those at ``train_index``, and bake
    the temperature into ``model``. Returns the record and its summary."""
    from trainer.shifts import SHIFTS, shift

    reader = Reader(model)
    cal_images, cal_labels = images[calibration_index], np.asarray(labels)[calibration_index]
    cal = reader.read(cal_images, views, batch)
    temperature = trust.fit_temperature(cal.logits, cal_labels)
    before, after = trust.tempered(cal.logits, 1.0), trust.tempered(cal.logits, temperature)
    rng = np.random.default_rng((seed, 37))
    bank_index = np.asarray(train_index)
    if len(bank_index) > trust.BANK_MAX:
        bank_index = np.sort(rng.choice(bank_index, trust.BANK_MAX, replace=False))
    bank = reader.features(images[bank_index], batch)
    pixels = trust.Gaussian.fit(trust.pixel_statistics(images[train_index]))
    record = Trust(
        temperature=temperature,
        set_scores=np.sort(trust.set_scores(after, cal_labels)),
        bank=bank,
        feature_scale=trust.Scale(0.0, 1.0),
        pixels=pixels,
        pixel_scale=trust.Scale(0.0, 1.0),
        threshold=0.0,
    )
    raw = record.detectors(cal.features, cal_images)
    record = Trust(
        **{
            **record.__dict__,
            "feature_scale": trust.Scale.fit(raw["knn"]),
            "pixel_scale": trust.Scale.fit(raw["pixels"]),
        }
    )
    scores = record.domain_score(cal.features, cal_images)
    record = Trust(**{**record.__dict__, "threshold": trust.threshold_for(scores)})
    flagged = {}
    for name in SHIFTS:
        moved = shift(cal_images, name, seed)
        flagged[name] = float(
            np.mean(record.domain_score(reader.features(moved, batch), moved) > record.threshold)
        )
    reader.temper(temperature)
    summary = _summary(record, cal.logits, cal_labels, before, after, scores, flagged, seed)
    return record, summary


def _summary(
    record: Trust,
    logits: np.ndarray,
    labels: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    scores: np.ndarray,
    flagged: dict[str, float],
    seed: int,
) -> dict[str, Any]:
    sets = []
    for coverage in trust.COVERAGES:
        member = record.sets(after, coverage)
        sets.append(
            {
                "coverage": coverage,
                "mean_set_size": float(member.sum(axis=1).mean()),
                "set_coverage": float(member[np.arange(len(labels)), labels].mean()),
            }
        )
    return trust.as_json(
        {
            "calibration_images": len(labels),
            "temperature": record.temperature,
            "accuracy": float(np.mean(after.argmax(axis=1) == labels)),
            "nll_before": trust.nll(before, labels),
            "nll_after": trust.nll(after, labels),
            "ece_before": trust.reliability(before, labels).ece,
            "ece_after": _cross_fitted(logits, labels, seed),
            "reliability": trust.reliability(after, labels).as_dict(),
            "sets": sets,
            "abstention": trust.abstention(after, labels),
            "domain": {
                "threshold": record.threshold,
                "retain_goal": trust.RETAIN,
                "confidence": trust.CONFIDENCE,
                "retained": float(np.mean(scores <= record.threshold)),
                "detector": f"max of the {record.neighbours}-th nearest training image's "
                "feature distance and the pixel statistics' Mahalanobis distance, each scaled "
                "to the calibration slice",
                "flagged_shifted": flagged,
            },
        }
    )


def _cross_fitted(logits: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """ECE of the tempered probabilities, each half's temperature fitted on the other half."""
    rng = np.random.default_rng((seed, 38))
    order = rng.permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    probs = np.zeros((len(labels), logits.shape[-1]))
    for fit_on, score_on in (halves, halves[::-1]):
        t = trust.fit_temperature(logits[..., fit_on, :], labels[fit_on])
        probs[score_on] = trust.tempered(logits[..., score_on, :], t)
    return trust.reliability(probs, labels).ece
