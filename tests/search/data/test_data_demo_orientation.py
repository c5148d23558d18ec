"""make_demo_orientation(): deterministic, balanced, and its classes are each other's flips and
quarter turns, so a flip or a turn changes the label."""

from __future__ import annotations

import numpy as np
import pytest

from search.data import DataError, load_dataset, make_demo_orientation
from search.data.demo_orientation import ORIENTATION_CLASSES, class_after
from search.data.inputs import KEYWORDS, read_inputs
from trainer.records import Dataset


@pytest.fixture(scope="module")
def orient_800() -> Dataset:
    return make_demo_orientation(800, 32, seed=0)


def test_same_seed_gives_identical_bytes_and_other_seeds_differ() -> None:
    a, b = make_demo_orientation(40, 24, seed=3), make_demo_orientation(40, 24, seed=3)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.images.tobytes() != make_demo_orientation(40, 24, seed=4).images.tobytes()


def test_shapes_balanced_classes_and_shuffled(orient_800: Dataset) -> None:
    ds = orient_800
    assert ds.images.shape == (800, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert ds.class_names == ORIENTATION_CLASSES and len(set(ds.class_names)) == 8
    assert np.bincount(ds.labels, minlength=8).tolist() == [100] * 8
    assert not np.all(np.diff(ds.labels) >= 0)
    assert np.bincount(make_demo_orientation(13, 16).labels, minlength=8).tolist() == [
        2, 2, 2, 2, 2, 1, 1, 1,
    ]  # fmt: skip
    assert ds.images.std() > 20  # not blank: texture, colour and glyphs vary


def test_too_few_images_or_too_small_are_refused() -> None:
    with pytest.raises(DataError, match="at least 8"):
        make_demo_orientation(5)
    with pytest.raises(DataError, match="below 8 pixels"):
        make_demo_orientation(16, 4)


def test_the_label_map_of_flips_and_turns() -> None:
    assert [class_after(c, turns=1) for c in range(8)] == [1, 2, 3, 0, 5, 6, 7, 4]
    assert [class_after(c, mirror=True) for c in range(8)] == [4, 7, 6, 5, 0, 3, 2, 1]
    for c in range(8):  # a dihedral view is a permutation: no class is left where it was
        views = {class_after(c, turns=k, mirror=m) for k in range(4) for m in (False, True)}
        assert views == set(range(8))


def _contrast(images: np.ndarray) -> np.ndarray:
    """Per image, how far each pixel's brightness is from the image's median (colour and the
    glyph's light-on-dark or dark-on-light drawing cancel out), on a 16 x 16 grid."""
    grey = images.astype(np.float32).mean(axis=-1)
    c = np.abs(grey - np.median(grey, axis=(1, 2), keepdims=True))
    c /= c.mean(axis=(1, 2), keepdims=True)
    n, s = c.shape[:2]
    return c.reshape(n, 16, s // 16, 16, s // 16).mean(axis=(2, 4))


@pytest.mark.parametrize(
    "view, kwargs",
    [
        (lambda a: np.rot90(a, 1), {"turns": 1}),
        (lambda a: np.rot90(a, 2), {"turns": 2}),
        (lambda a: np.fliplr(a), {"mirror": True}),
        (lambda a: np.rot90(np.fliplr(a), 3), {"mirror": True, "turns": 3}),
    ],
)
def test_a_view_of_one_class_looks_like_the_class_it_maps_to(
    orient_800: Dataset, view, kwargs
) -> None:
    maps = _contrast(orient_800.images)
    means = np.stack([maps[orient_800.labels == c].mean(axis=0) for c in range(8)])
    for c in range(8):
        distance = np.array([np.abs(view(means[c]) - means[j]).mean() for j in range(8)])
        target = class_after(c, **kwargs)
        assert distance.argmin() == target, (c, target, distance.round(3))
        assert distance[c] > 1.2 * distance[target]  # and not like its own class


def _nearest_mean_accuracy(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> float:
    means = np.stack([x[y == c].mean(axis=0) for c in range(8)]).reshape(8, -1)
    d = ((xt.reshape(len(xt), 1, -1) - means[None]) ** 2).sum(axis=-1)
    return float((d.argmin(axis=1) == yt).mean())


def test_learnable_but_not_under_dihedral_augmentation(orient_800: Dataset) -> None:
    x, y = _contrast(orient_800.images), orient_800.labels
    train, test = slice(0, 600), slice(600, None)
    plain = _nearest_mean_accuracy(x[train], y[train], x[test], y[test])
    views = [np.rot90(v, k, axes=(1, 2)) for v in (x[train], x[train, :, ::-1]) for k in range(4)]
    augmented = _nearest_mean_accuracy(
        np.concatenate(views), np.tile(y[train], 8), x[test], y[test]
    )
    assert plain > 0.35, plain  # chance is 1/8; a CNN does far better
    assert augmented < 0.25, augmented  # every class's mean is the same blur of all eight


def test_the_keyword_loads_it_at_the_requested_size() -> None:
    ds = load_dataset("demo-orientation", image_size=24)
    assert ds.images.shape == (1600, 24, 24, 3)
    assert ds.class_names == ORIENTATION_CLASSES
    assert "demo-orientation" in KEYWORDS
    got = read_inputs(["demo-orientation"], ORIENTATION_CLASSES[::-1], 24)
    assert np.array_equal(got.labels, 7 - ds.labels)  # mapped to the model's classes by name
