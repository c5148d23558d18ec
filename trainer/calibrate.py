"""Calibrate a trained model on its calibration slice and fit its in-domain detector, then read
both back to score new images. The numbers live in ``trust.npz`` beside the model; the
temperature is also baked into the model (``Reader.temper``), so its own output is calibrated.

``fit`` returns the ``Trust`` record and a JSON summary with its evidence, every figure
cross-fitted (each half of the slice scored with what the other half fitted): ECE, prediction-set
sizes and coverage, the share the detector's threshold keeps; plus accuracy when abstaining and
the share of shifted copies of the slice the detector flags (``trainer.shifts``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer import trust

log = logging.getLogger(__name__)

FILE = "trust.npz"
FORMAT = 1
# One image's forward pass against one training step's, per image, with a margin for the neighbour
# search and feature reads a bare forward pass does not time (bench/inference_cost.py).
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
        with np.load(path, allow_pickle=False) as arrays:
            return Trust.from_arrays(arrays)
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
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
    which its weights never trained on, fit the detector on (at most ``BANK_MAX`` of) those at
    ``train_index``, and bake the temperature into ``model``. Returns the record and its
    summary."""
    from trainer.readout import Reader  # Keras: not needed to load a record
    from trainer.shifts import SHIFTS, shift

    reader = Reader(model)
    cal_images, cal_labels = images[calibration_index], np.asarray(labels)[calibration_index]
    cal = reader.read(cal_images, views, batch)
    temperature = trust.fit_temperature(cal.logits, cal_labels, seed)
    bank_index = np.asarray(train_index)
    if len(bank_index) > trust.BANK_MAX:
        rng = np.random.default_rng((seed, 37))
        bank_index = np.sort(rng.choice(bank_index, trust.BANK_MAX, replace=False))
    bank_images = images[bank_index]
    # Stored as float16: the scales and threshold are fitted on what predict will read.
    bank = reader.features(bank_images, batch).astype(np.float16).astype(np.float32)
    pixels = trust.Gaussian.fit(trust.pixel_statistics(bank_images))
    unscaled = Trust(
        temperature=temperature,
        set_scores=np.sort(trust.set_scores(trust.tempered(cal.logits, temperature), cal_labels)),
        bank=bank,
        feature_scale=trust.Scale(0.0, 1.0),
        pixels=pixels,
        pixel_scale=trust.Scale(0.0, 1.0),
        threshold=0.0,
    )
    raw = unscaled.detectors(cal.features, cal_images)
    scaled = dataclasses.replace(
        unscaled,
        feature_scale=trust.Scale.fit(raw["knn"]),
        pixel_scale=trust.Scale.fit(raw["pixels"]),
    )
    scores = scaled.domain_score(cal.features, cal_images)
    record = dataclasses.replace(scaled, threshold=trust.threshold_for(scores))
    flagged = {}
    for name in SHIFTS:
        moved = shift(cal_images, name, seed)
        moved_scores = record.domain_score(reader.features(moved, batch), moved)
        flagged[name] = float(np.mean(moved_scores > record.threshold))
    reader.temper(temperature)
    summary = _summary(record, cal.logits, cal_labels, scores, flagged, seed)
    return record, summary


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng((seed, 38)).permutation(n)
    return order[: n // 2], order[n // 2 :]


def _summary(
    record: Trust,
    logits: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    flagged: dict[str, float],
    seed: int,
) -> dict[str, Any]:
    """The evidence, each figure on images its own fit did not see: every half of the slice is
    scored with the temperature, conformal threshold and detector threshold of the other half."""
    before = trust.tempered(logits, 1.0)
    after = trust.tempered(logits, record.temperature)
    crossed = np.zeros_like(after)
    kept = np.zeros(len(labels), bool)
    members = {c: np.zeros((len(labels), after.shape[1]), bool) for c in trust.COVERAGES}
    halves = _halves(len(labels), seed)
    for fit_on, score_on in (halves, halves[::-1]):
        t = trust.fit_temperature(logits[..., fit_on, :], labels[fit_on], seed)
        crossed[score_on] = trust.tempered(logits[..., score_on, :], t)
        kept[score_on] = scores[score_on] <= trust.threshold_for(scores[fit_on])
        fit_scores = trust.set_scores(trust.tempered(logits[..., fit_on, :], t), labels[fit_on])
        for coverage in trust.COVERAGES:
            q = trust.conformal_threshold(fit_scores, coverage)
            members[coverage][score_on] = trust.prediction_sets(crossed[score_on], q)
    rows = np.arange(len(labels))
    table = trust.reliability(crossed, labels)
    sets = [
        {
            "coverage": c,
            "mean_set_size": float(m.sum(axis=1).mean()),
            "set_coverage": float(m[rows, labels].mean()),
        }
        for c, m in members.items()
    ]
    return trust.as_json(
        {
            "calibration_images": len(labels),
            "temperature": record.temperature,
            "accuracy_before": float(np.mean(before.argmax(axis=1) == labels)),
            "accuracy": float(np.mean(after.argmax(axis=1) == labels)),
            "nll_before": trust.nll(before, labels),
            "nll_after": trust.nll(crossed, labels),
            "ece_before": trust.reliability(before, labels).ece,
            "ece_after": table.ece,
            "reliability": table.as_dict(),
            "sets": sets,
            "abstention": trust.abstention(after, labels),
            "domain": {
                "threshold": record.threshold,
                "retain_goal": trust.RETAIN,
                "confidence": trust.retention_confidence(len(labels)),
                "retained": float(kept.mean()),
                "detector": f"the larger of the {record.neighbours}-th nearest training image's "
                "feature distance and the pixel statistics' Mahalanobis distance, each scaled "
                "to the calibration slice",
                "flagged_shifted": flagged,
            },
        }
    )
