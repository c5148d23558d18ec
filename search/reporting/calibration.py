"""How far a model's probabilities are from how often it is right: the expected calibration
error over equal-width confidence bins, and the reliability diagram that shows it (Pillow only).

ECE = sum over bins of (images in the bin / all images) x |accuracy in the bin - mean top
probability in the bin|, with the top probability binned into ``BINS`` equal-width bins of
(0, 1] (the definition of Guo et al. 2017, "On calibration of modern neural networks").
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from search.reporting.confusion import load_font

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


def reliability_png(table: Reliability, title: str = "") -> bytes:
    """Accuracy against confidence per bin, with the diagonal a calibrated model would follow
    and each bar's image count; PNG bytes."""
    size, left, top, bottom = 360, 56, 40, 44
    width, height = left + size + 20, top + size + bottom
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = load_font(14), load_font(11)
    draw.text((8, 8), title or f"reliability (ECE {table.ece:.3f})", fill="black", font=font)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + x * size, top + (1 - y) * size

    draw.rectangle((*at(0, 1), *at(1, 0)), outline="gray")
    draw.line((*at(0, 0), *at(1, 1)), fill="lightgray", width=2)
    for k, n in enumerate(table.counts):
        if n == 0:
            continue
        lo, hi = table.edges[k], table.edges[k + 1]
        acc, conf = float(table.accuracy[k]), float(table.confidence[k])
        draw.rectangle((*at(lo, acc), *at(hi, 0)), fill="#1f77b4", outline="white")
        gap = (*at(lo, max(acc, conf)), *at(hi, min(acc, conf)))
        draw.rectangle(gap, outline="#d62728")
        draw.text((at(lo, 0)[0] + 1, at(0, 0)[1] + 4), str(int(n)), fill="dimgray", font=small)
    draw.text((left, top + size + 22), "confidence (top probability)", fill="black", font=small)
    draw.text((4, top + size / 2), "accuracy", fill="black", font=small)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
