"""What a study's images say about their own symmetries and colours, measured before the search.

A quick classifier (RBF SVC on 64 principal components of 16 x 16 thumbnails, scikit-learn) is
fitted on a stratified 60% of the images and scored on the rest as they are, and again with
every scored image turned (mirrored left-right, flipped upside down, quarter and half turns,
transposed) while keeping its label. Where a turn keeps the label and the images have no
preferred orientation, the classifier scores the turned images as well as the plain ones; where
it changes the label (a 6 turned is a 9) or the images all stand upright (digits, faces, scenes),
its accuracy falls towards chance. A second classifier fitted on grey copies of the same images
says how much of the accuracy needs colour. ``search.policy.traits`` turns the figures into the
study's ``symmetry`` and ``colour``.

Each figure is a *retained share*: (accuracy - chance) / (plain accuracy - chance), 1.0 when the
change costs nothing, 0.0 when it leaves the classifier at chance. scikit-learn and Pillow only;
a few seconds on 2,000 images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Set before measuring, not tuned (docs/constants.md); bench/traits.py measures the probe as shipped.
THUMB = 16  # px: enough for orientation and colour, small enough for seconds
MAX_IMAGES = 2000  # a stratified sample above this
SCORED_SHARE = 0.4
# Changes of orientation the study's symmetry is read from: each maps N x H x W x C images.
TURNS = {
    "mirror": lambda x: x[:, :, ::-1],
    "flip": lambda x: x[:, ::-1],
    "quarter_turn": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "half_turn": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "transpose": lambda x: np.swapaxes(x, 1, 2),
}


@dataclass(frozen=True)
class Invariance:
    """The retained shares of a quick classifier's accuracy, with what they rest on."""

    plain_accuracy: float
    chance: float
    n_scored: int
    retained: dict[str, float] = field(default_factory=dict)  # per TURNS key
    grey_retained: float = 1.0  # a classifier on grey copies, against the colour one
    grey_images: bool = False  # every image has equal channels: colour cannot matter

    def as_dict(self) -> dict[str, object]:
        return {
            "plain_accuracy": round(self.plain_accuracy, 4),
            "chance": round(self.chance, 4),
            "n_scored": self.n_scored,
            "retained": {k: round(v, 3) for k, v in self.retained.items()},
            "grey_retained": round(self.grey_retained, 3),
            "grey_images": self.grey_images,
        }


def thumbnails(images: np.ndarray, size: int = THUMB) -> np.ndarray:
    """float32 N x size x size x 3 copies (area-averaged, whole frame) of uint8 RGB images."""
    from PIL import Image

    out = np.empty((len(images), size, size, 3), np.float32)
    for i, image in enumerate(images):
        out[i] = np.asarray(
            Image.fromarray(image).resize((size, size), Image.Resampling.BOX), np.float32
        )
    return out


COMPONENTS = 64


def _classifier(seed: int, n_fit: int):
    """SVC on at most COMPONENTS principal components (fewer for a few dozen images)."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    components = max(1, min(COMPONENTS, n_fit - 1))
    return make_pipeline(StandardScaler(), PCA(components, random_state=seed), SVC())


def _split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (fit, score) split of at most MAX_IMAGES indices; every class on both sides
    where it has two images."""
    rng = np.random.default_rng(seed)
    fit, scored = [], []
    share = min(1.0, MAX_IMAGES / max(1, len(labels)))
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        idx = idx[: max(2, round(share * len(idx)))]
        k = max(1, round(SCORED_SHARE * len(idx))) if len(idx) > 1 else 0
        scored.append(idx[:k])
        fit.append(idx[k:])
    return np.concatenate(fit), np.concatenate(scored)


def measure(images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Invariance:
    """The retained shares of ``images`` (uint8 N x H x W x 3) with ``labels``."""
    fit, scored = _split(labels, seed)
    thumbs = thumbnails(images[np.concatenate([fit, scored])])
    x_fit, x_scored = thumbs[: len(fit)], thumbs[len(fit) :]
    y_fit, y_scored = labels[fit], labels[scored]
    counts = np.bincount(y_scored)
    chance = float(counts.max() / max(1, len(y_scored)))
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    model = _classifier(seed, len(fit)).fit(flat(x_fit), y_fit)

    def accuracy(clf, x: np.ndarray) -> float:
        return float(np.mean(clf.predict(flat(np.ascontiguousarray(x))) == y_scored))

    plain = accuracy(model, x_scored)
    above = plain - chance

    def retained(value: float) -> float:
        return float((value - chance) / above) if above > 0 else 0.0

    shares = {name: retained(accuracy(model, turn(x_scored))) for name, turn in TURNS.items()}
    grey_images = bool(np.all(images[..., 0] == images[..., 1])) and bool(
        np.all(images[..., 1] == images[..., 2])
    )
    grey_share = 1.0
    if not grey_images:
        grey = lambda x: np.repeat(x @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, -1)  # noqa: E731
        grey_model = _classifier(seed, len(fit)).fit(flat(grey(x_fit)), y_fit)
        grey_share = retained(accuracy(grey_model, grey(x_scored)))
    return Invariance(plain, chance, len(scored), shares, grey_share, grey_images)
