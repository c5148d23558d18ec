"""A contact sheet (PNG) of the removed images, grouped by reason, one caption per tile."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from search.cleaning.records import REASON_TEXT, REASONS, CleanResult, Removal

TILE = 96  # every image is shown at 96 x 96, whatever its size
COLUMNS = 10
MAX_PER_SECTION = 200
_PAD, _CAPTION, _HEADER = 6, 28, 24
_SHORT = {
    "exact_duplicate": "exact dup",
    "exact_conflict": "exact conflict",
    "near_duplicate": "near dup",
    "near_conflict": "near conflict",
    "outlier": "outlier",
    "mislabel": "mislabel",
}
_INK, _PAPER, _RULE = (20, 20, 20), (255, 255, 255), (200, 200, 200)

Tile = tuple[int, str, str]  # input index, caption line 1, caption line 2


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ValueError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _caption(r: Removal) -> str:
    short = _SHORT.get(r.reason, r.reason)
    if r.kept is not None:
        return f"{short} of #{r.kept}"
    if r.score is not None and r.reason == "outlier":
        return f"{short} {r.score:.1f}x"
    return short


def sections(result: CleanResult, class_names: Sequence[str]) -> list[tuple[str, list[Tile]]]:
    """(heading, tiles) per reason that removed something, then flagged-but-kept mislabels."""
    out: list[tuple[str, list[Tile]]] = []
    for reason in REASONS:
        rows = [r for r in result.removals if r.reason == reason]
        if rows:
            tiles = [(r.index, f"#{r.index} {class_names[r.label]}", _caption(r)) for r in rows]
            out.append((f"{REASON_TEXT[reason]}: {len(rows)}", tiles))
    kept = [f for f in result.mislabels if not f.removed]
    if kept:
        tiles = [
            (f.index, f"#{f.index} {class_names[f.label]}", f"-> {class_names[f.predicted]}")
            for f in kept
        ]
        out.append(
            (f"likely mislabels, KEPT for review (label -> quick model): {len(kept)}", tiles)
        )
    return out


def contact_sheet(
    images: np.ndarray, parts: list[tuple[str, list[Tile]]], title: str
) -> Image.Image:
    """Render ``parts`` of ``images`` (input images, uint8 N x H x W x 3) as one RGB image."""
    font, bold = _font(11), _font(14)
    width = COLUMNS * (TILE + _PAD) + _PAD
    heights = [_HEADER + 8]
    for _, tiles in parts:
        shown = min(len(tiles), MAX_PER_SECTION) + (len(tiles) > MAX_PER_SECTION)
        rows = max(1, -(-shown // COLUMNS))
        heights.append(_HEADER + rows * (TILE + _CAPTION + _PAD))
    empty = 0 if parts else _HEADER * 2
    sheet = Image.new("RGB", (width, sum(heights) + empty), _PAPER)
    draw = ImageDraw.Draw(sheet)
    draw.text((_PAD, 6), title, fill=_INK, font=bold)
    y = heights[0]
    if not parts:
        draw.text((_PAD, y + 8), "Nothing was removed.", fill=_INK, font=bold)
    for (heading, tiles), height in zip(parts, heights[1:], strict=True):
        draw.line((0, y, width, y), fill=_RULE)
        draw.text((_PAD, y + 5), heading, fill=_INK, font=bold)
        top = y + _HEADER
        for k, (index, line1, line2) in enumerate(tiles[:MAX_PER_SECTION]):
            r, c = divmod(k, COLUMNS)
            x0, y0 = _PAD + c * (TILE + _PAD), top + r * (TILE + _CAPTION + _PAD)
            tile = Image.fromarray(np.ascontiguousarray(images[index]))
            if tile.size != (TILE, TILE):
                small = tile.size[0] < TILE
                method = Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS
                tile = tile.resize((TILE, TILE), method)
            sheet.paste(tile, (x0, y0))
            draw.text((x0, y0 + TILE + 1), line1, fill=_INK, font=font)
            draw.text((x0, y0 + TILE + 14), line2, fill=_INK, font=font)
        if len(tiles) > MAX_PER_SECTION:
            k = MAX_PER_SECTION
            r, c = divmod(k, COLUMNS)
            x0, y0 = _PAD + c * (TILE + _PAD), top + r * (TILE + _CAPTION + _PAD)
            more = len(tiles) - MAX_PER_SECTION
            draw.text((x0, y0 + TILE // 2), f"+{more} more\n(report.json)", fill=_INK, font=font)
        y += height
    return sheet
