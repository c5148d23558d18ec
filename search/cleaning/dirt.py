"""Known dirt injected into a clean data set, so the cleaning detectors can be measured.

A test double shipped with the code (like optuna's ``testing`` package): the tests and
``bench/cleaning.py`` build their dirty sets here. Every injected image carries its truth:
what kind of dirt it is and, for duplicates, the group of images that are copies of each other
(the source image included). Seeded: the same (data set, spec) gives the same dirty set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trainer.records import Dataset

CLEAN, EXACT, CROSS, NEAR, NEAR_CROSS, PHOTO, CARTOON, PASTED, FLIP = (
    "clean",
    "exact",
    "cross",
    "near",
    "near_cross",
    "photo",
    "cartoon",
    "pasted",
    "flip",
)
OUTLIER_KINDS: tuple[str, ...] = (PHOTO, CARTOON, PASTED)
# Flat, saturated "clip-art" colours; none of them is a stain colour.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (70, 240, 240), (240, 50, 230), (0, 0, 0), (255, 255, 255), (0, 128, 128),
    (128, 0, 0), (0, 0, 128), (170, 255, 195), (255, 250, 200),
)  # fmt: skip
_WORDS = ("POW!", "ZAP", "hello", "ABC", "42", "OK", "LOL", "cat", "BOOM", "x+y")


@dataclass(frozen=True)
class DirtSpec:
    """How many of each kind of dirt to inject."""

    exact: int = 40  # in-class copies of a real image (byte-identical)
    cross: int = 20  # byte-identical copies with another label
    near: int = 30  # shifted / re-compressed / re-lit copies, same label
    near_cross: int = 10  # near copies with another label
    photos: int = 30  # crops of scikit-learn's sample photos (new images)
    cartoons: int = 15  # drawn cartoons (new images)
    pasted: int = 15  # cartoons pasted over a real image, covering most of it (in place)
    flips: int = 40  # labels changed to another class (in place)
    seed: int = 0


@dataclass(frozen=True)
class DirtyDataset:
    """The dirty data set and, per image, its truth.

    ``kind``: one of the kind names above; ``group``: duplicate group id shared by a source
    image and its copies (-1 otherwise); ``source``: index of the clean image it was made from
    (-1 for new images); ``true_label``: the label before any flip (-1 for new images).
    """

    dataset: Dataset
    kind: np.ndarray
    group: np.ndarray
    source: np.ndarray
    true_label: np.ndarray

    def indices(self, *kinds: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.kind, kinds))


class _Added:
    """The rows ``inject_dirt`` appends: image, label (-1: drawn at random later), kind, group
    and source image (-1: none)."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.labels: list[int] = []
        self.kinds: list[str] = []
        self.groups: list[int] = []
        self.sources: list[int] = []

    def add(self, img: np.ndarray, lab: int, what: str, g: int, src: int) -> None:
        self.images.append(img)
        self.labels.append(lab)
        self.kinds.append(what)
        self.groups.append(g)
        self.sources.append(src)


def inject_dirt(ds: Dataset, spec: DirtSpec = DirtSpec()) -> DirtyDataset:
    """Return ``ds`` with the dirt of ``spec`` added, shuffled (``ds`` itself is not changed)."""
    rng = np.random.default_rng(spec.seed)
    n, size, k = len(ds), ds.images.shape[1], ds.n_classes
    images, labels = ds.images.copy(), ds.labels.copy()
    kind = np.full(n, CLEAN, dtype=object)
    group = np.full(n, -1, dtype=np.int64)
    used = spec.exact + spec.cross + spec.near + spec.near_cross + spec.pasted + spec.flips
    if used > n:
        raise ValueError(f"the spec needs {used} distinct source images, the data set has {n}")
    picks = iter(rng.permutation(n)[:used].tolist())
    added = _Added()

    def other(lab: int) -> int:
        return int((lab + rng.integers(1, k)) % k)

    g = 0
    for what, count in ((EXACT, spec.exact), (CROSS, spec.cross)):
        for _ in range(count):
            s = next(picks)
            kind[s], group[s] = what, g
            copies = 2 if what == EXACT and rng.random() < 0.25 else 1
            for _ in range(copies):
                lab = other(int(labels[s])) if what == CROSS else int(labels[s])
                added.add(images[s].copy(), lab, what, g, s)
            g += 1
    for what, count in ((NEAR, spec.near), (NEAR_CROSS, spec.near_cross)):
        for _ in range(count):
            s = next(picks)
            kind[s], group[s] = what, g
            lab = other(int(labels[s])) if what == NEAR_CROSS else int(labels[s])
            added.add(near_copy(images[s], rng), lab, what, g, s)
            g += 1
    for _ in range(spec.pasted):
        s = next(picks)
        images[s] = paste_cartoon(images[s], rng)
        kind[s] = PASTED
    for _ in range(spec.flips):
        s = next(picks)
        labels[s] = other(int(labels[s]))
        kind[s] = FLIP
    photos = sample_photos()
    for _ in range(spec.photos):
        added.add(photo_crop(photos[int(rng.integers(len(photos)))], size, rng), -1, PHOTO, -1, -1)
    for _ in range(spec.cartoons):
        added.add(cartoon(size, rng), -1, CARTOON, -1, -1)
    added.labels = [int(rng.integers(k)) if lab < 0 else lab for lab in added.labels]
    return _shuffled(ds, images, labels, kind, group, added, rng)


def _shuffled(
    ds: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    kind: np.ndarray,
    group: np.ndarray,
    added: _Added,
    rng: np.random.Generator,
) -> DirtyDataset:
    """``ds``'s (dirtied) rows and the ``added`` ones, in one random order."""
    n, m = len(ds), len(added.images)
    all_images = np.concatenate([images, np.stack(added.images)]) if m else images
    order = rng.permutation(n + m)
    sources = np.asarray(added.sources, dtype=np.int64)
    return DirtyDataset(
        dataset=Dataset(
            all_images[order],
            np.concatenate([labels, np.asarray(added.labels, dtype=np.int64)])[order],
            ds.class_names,
        ),
        kind=np.concatenate([kind, np.asarray(added.kinds, dtype=object)])[order].astype(str),
        group=np.concatenate([group, np.asarray(added.groups, dtype=np.int64)])[order],
        source=np.concatenate([np.arange(n, dtype=np.int64), sources])[order],
        true_label=np.concatenate(
            [ds.labels, np.asarray([ds.labels[s] if s >= 0 else -1 for s in added.sources])]
        ).astype(np.int64)[order],
    )


def shift_image(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels; the uncovered edge repeats the border pixels."""
    h, w = img.shape[:2]
    px, py = abs(dx), abs(dy)
    padded = np.pad(img, ((py, py), (px, px), (0, 0)), mode="edge")
    return padded[py - dy : py - dy + h, px - dx : px - dx + w]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` saved as a JPEG of ``quality`` and decoded again."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def near_copy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A re-capture look-alike: a 1-3 px shift, and/or JPEG quality 60-85, and/or re-lighting."""
    steps = rng.permutation(3)[: int(rng.integers(1, 4))]
    out = img
    if 0 in steps:
        dx, dy = 0, 0
        while dx == 0 and dy == 0:
            dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
        out = shift_image(out, dx, dy)
    if 2 in steps:
        gain, offset = rng.uniform(0.92, 1.08), rng.uniform(-8, 8)
        out = np.clip(out.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)
    if 1 in steps:
        out = jpeg(out, int(rng.integers(60, 86)))
    return np.ascontiguousarray(out)


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's two bundled sample photos (china.jpg, flower.jpg), uint8 RGB."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(a, dtype=np.uint8) for a in load_sample_images().images]


def photo_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (48 to 320 px on a side) of ``photo``, resized to ``size``."""
    h, w = photo.shape[:2]
    side = int(rng.integers(48, min(h, w, 320) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return _PALETTE[int(rng.integers(len(_PALETTE)))]


def _draw_shapes(draw: ImageDraw.ImageDraw, side: int, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = (int(v) for v in rng.integers(-side // 4, side, size=2))
        x1, y1 = x0 + int(rng.integers(side // 6, side)), y0 + int(rng.integers(side // 6, side))
        fill, line = _colour(rng), (0, 0, 0) if rng.random() < 0.7 else _colour(rng)
        width = int(rng.integers(1, max(2, side // 40)))
        shape = int(rng.integers(4))
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill, outline=line, width=width)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill, outline=line, width=width)
        elif shape == 2:
            pts = [tuple(int(v) for v in rng.integers(0, side, size=2)) for _ in range(3)]
            draw.polygon(pts, fill=fill, outline=line)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=max(2, side // 20))
    if rng.random() < 0.6:
        font = ImageFont.load_default(size=max(10, side // 5))
        word = _WORDS[int(rng.integers(len(_WORDS)))]
        x, y = (float(v) for v in rng.integers(0, side // 2, size=2))
        draw.text((x, y), word, fill=_colour(rng), font=font, stroke_width=1, stroke_fill=(0, 0, 0))


def cartoon(size: int, rng: np.random.Generator) -> np.ndarray:
    """Clip art: random shapes and a word in flat colours (drawn at 4x, then downsized)."""
    side = 4 * size
    im = Image.new("RGB", (side, side), _colour(rng))
    _draw_shapes(ImageDraw.Draw(im), side, rng)
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def paste_cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` with a cartoon panel pasted over 60-90% of its area (the original shows at the
    edge)."""
    size = img.shape[0]
    frac = float(np.sqrt(rng.uniform(0.6, 0.9)))
    side = max(8, int(round(size * frac)))
    panel = cartoon(side, rng)
    x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    out = img.copy()
    out[y : y + side, x : x + side] = panel
    return out
