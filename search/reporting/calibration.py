"""How far a model's probabilities are from how often it is right: the expected calibration
error over equal-width confidence bins, and the reliability diagram that shows it (Pillow only).

ECE = sum over bins of (images in the bin / all images) x |accuracy in the bin - mean top
probability in the bin|, with the top probability binned into ``BINS`` equal-width bins of
(0, 1] (the definition of Guo et al. 2017, "On calibration of modern neural networks").
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from search.reporting.confusion import load_font
from trainer.trust import BINS, Reliability, expected_calibration_error, reliability

__all__ = ["BINS", "Reliability", "expected_calibration_error", "reliability", "reliability_png"]


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
