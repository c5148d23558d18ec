"""A confusion matrix drawn as a PNG (Pillow only): for predictions, the dashboard and reports."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def load_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def confusion_png(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> bytes:
    """A heat grid of ``matrix`` (rows: true, columns: predicted) with counts and class names.

    Cell colour is the row-normalised share (recall along the diagonal), white to dark blue;
    numbers are counts. Drawn with Pillow (no matplotlib). Returns PNG bytes.
    """
    m = np.asarray(matrix, dtype=np.int64)
    n = m.shape[0]
    font, small = load_font(14), load_font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(probe.textlength(str(c), font=small)) for c in class_names) + 12
    cell = max(40, len(str(int(m.max()) if m.size else 0)) * 10 + 14)
    top = label_w + 44  # rotated column labels + header
    left = label_w + 24
    width, height = left + n * cell + 16, top + n * cell + 16
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), title or "confusion matrix", fill="black", font=font)
    draw.text((left, 26), "predicted ->", fill="dimgray", font=small)
    rows = m.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            v = float(share[i, j])
            colour = (int(255 - 225 * v), int(255 - 190 * v), int(255 - 80 * v))
            draw.rectangle((x0, y0, x0 + cell, y0 + cell), fill=colour, outline="lightgray")
            text = str(int(m[i, j]))
            tw = probe.textlength(text, font=small)
            ink = "white" if v > 0.55 else "black"
            draw.text((x0 + (cell - tw) / 2, y0 + cell / 2 - 7), text, fill=ink, font=small)
    for i, name in enumerate(class_names):
        tw = probe.textlength(str(name), font=small)
        draw.text((left - 8 - tw, top + i * cell + cell / 2 - 7), str(name), "black", font=small)
        strip = Image.new("RGB", (label_w, 16), "white")
        ImageDraw.Draw(strip).text((2, 0), str(name), fill="black", font=small)
        rotated = strip.rotate(90, expand=True)
        image.paste(rotated, (left + i * cell + cell // 2 - 8, top - 4 - label_w))
    draw.text((4, top - 18), "true", fill="dimgray", font=small)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
