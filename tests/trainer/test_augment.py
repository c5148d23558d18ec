from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer import AUGMENT_LEVELS, InvalidConfig, backend
from trainer.augment import make_augment
from trainer.augment_layers import Blur, Colour, Geometry

T, N = keras.ops.convert_to_tensor, keras.ops.convert_to_numpy


def seed(a: int, b: int):
    return backend.batch_seed(a, b)


def graph(fn):
    """``fn`` as the trainer runs it: traced on TensorFlow, eager on the other backends."""
    if backend.TF:
        import tensorflow as tf

        return tf.function(fn)
    return fn


def float32(x) -> bool:
    return keras.backend.standardize_dtype(x.dtype) == "float32"


@pytest.fixture(scope="module")
def batch(real_arrays):
    images = T(real_arrays["images"][:32].astype("float32"))
    onehot = keras.ops.one_hot(T(real_arrays["labels"][:32]), 8)
    return images, onehot


@pytest.mark.parametrize("level", AUGMENT_LEVELS)
def test_each_level_keeps_shapes_dtypes_and_label_sums(level, batch) -> None:
    images, onehot = batch
    out_images, out_labels = make_augment(level, seed=3)(images, onehot)
    assert out_images.shape == images.shape and float32(out_images)
    assert out_labels.shape == onehot.shape and float32(out_labels)
    np.testing.assert_allclose(N(out_labels).sum(axis=1), 1.0, atol=1e-5)
    assert 0.0 <= N(out_images).min() and N(out_images).max() <= 255.0
    changed = float(np.abs(N(out_images) - N(images)).mean())
    if level == "none":
        assert changed == 0.0
        np.testing.assert_array_equal(N(out_labels), N(onehot))
    else:
        assert changed > 1.0


def test_heavy_mixes_labels_into_soft_labels(batch) -> None:
    images, onehot = batch
    soft = [N(make_augment("heavy", seed=s)(images, onehot)[1]) for s in range(4)]
    assert any(((0 < s) & (s < 1)).any() for s in soft)


def dihedral(images, at: int) -> np.ndarray:
    return N(Geometry(zoom=0.0, shift=0.0)(images, seed(at, 0)))


def test_geometry_without_zoom_or_shift_only_rotates_and_flips(batch) -> None:
    images, _ = batch
    out = dihedral(images, at=5)
    src = N(images)
    for a, b in zip(src, out, strict=True):
        variants = [np.rot90(a, k) for k in range(4)] + [np.rot90(a[::-1], k) for k in range(4)]
        assert any(np.array_equal(b, v) for v in variants)


def test_unknown_level_is_an_invalid_config() -> None:
    with pytest.raises(InvalidConfig, match="none, light, moderate, heavy"):
        make_augment("extreme")


def test_geometry_reaches_all_eight_rotations_and_reflections() -> None:
    asym = np.arange(5 * 5 * 3, dtype="float32").reshape(5, 5, 3)  # no symmetry at all
    out = dihedral(T(np.stack([asym] * 200)), at=1)
    variants = [np.rot90(asym, k) for k in range(4)] + [np.rot90(asym[::-1], k) for k in range(4)]
    seen = [sum(np.array_equal(o, v) for o in out) for v in variants]
    assert sum(seen) == 200 and min(seen) >= 10  # every element, none starved (25 expected)


def test_geometry_zoom_and_shift_stay_within_their_ranges(batch) -> None:
    """A centred bright square keeps its size within +-10% and its centre within 8%."""
    img = np.zeros((64, 64, 3), np.float32)
    img[22:42, 22:42] = 255.0
    out = Geometry(zoom=0.1, shift=0.08)(T(np.stack([img] * 64)), seed(3, 0))
    sides, centres = [], []
    for o in N(out)[..., 0]:
        rows = np.flatnonzero(o.max(axis=1) > 127)
        sides.append(len(rows))
        centres.append(rows.mean())
    assert 17 <= min(sides) and max(sides) <= 23 and np.std(sides) > 0.5
    assert max(abs(c - 31.5) for c in centres) <= 0.08 * 64 + 1 and np.std(centres) > 1


def _hsv(x: np.ndarray) -> np.ndarray:
    return N(keras.ops.image.rgb_to_hsv(T((x / 255.0).astype(np.float32))))


def test_colour_matches_keras_colour_jitter_ranges(batch) -> None:
    """Brightness shifts the mean by <= 15% of 255, hue moves <= 0.02 of a turn, saturation
    scales by f / (1 - f), f in 0.35..0.65, i.e. 0.54x..1.86x; all three vary across images."""
    images, _ = batch
    x = N(images)
    only = {
        "brightness": Colour(0.15, 0.0, (0.5, 0.5), 0.0),
        "hue": Colour(0.0, 0.0, (0.5, 0.5), 0.04),
        "saturation": Colour(0.0, 0.0, (0.35, 0.65), 0.0),
    }
    out = {k: N(layer(images, seed(1, 2))) for k, layer in only.items()}
    shift = (out["brightness"] - x).mean(axis=(1, 2, 3))
    assert np.abs(shift).max() <= 0.15 * 255 + 1e-3 and shift.std() > 5
    src, moved = _hsv(np.clip(x, 0, 255)), _hsv(np.clip(out["hue"], 0, 255))
    coloured = src[..., 1] > 0.2
    dh = (moved[..., 0] - src[..., 0] + 0.5) % 1.0 - 0.5
    per_image = [np.median(d[c]) for d, c in zip(dh, coloured, strict=True) if c.sum() > 50]
    assert max(abs(v) for v in per_image) <= 0.025 and np.std(per_image) > 0.003
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    ratio = [
        np.abs(o - g[..., None]).sum() / np.abs(a - g[..., None]).sum()
        for o, a, g in zip(out["saturation"], x, grey, strict=True)
    ]
    assert 0.35 / 0.65 - 0.01 <= min(ratio) and max(ratio) <= 0.65 / 0.35 + 0.01
    assert np.std(ratio) > 0.1


def test_blur_smooths_some_images_and_leaves_the_rest(batch) -> None:
    images, _ = batch
    out = N(Blur(factor=1.0, sigma=1.0)(images, seed(4, 4)))
    x = N(images)
    changed = np.abs(out - x).mean(axis=(1, 2, 3)) > 0.01
    assert 0 < changed.sum() < len(x)  # probability drawn per image in [0, 1]
    rough = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert all(rough(o) < rough(a) for o, a, c in zip(out, x, changed, strict=True) if c)
    np.testing.assert_allclose(out.mean(), x.mean(), rtol=0.01)  # a blur keeps the brightness
    none_chosen = graph(lambda a, s: Blur(factor=0.0)(a, s))(images, seed(4, 4))
    np.testing.assert_array_equal(N(none_chosen), x)  # an empty choice is not an error


def test_heavy_runs_one_randaugment_operation_per_batch(batch) -> None:
    from trainer.augment_layers import OneOp

    layer = OneOp(keras.layers.RandAugment(value_range=(0, 255), num_ops=1, seed=2))
    assert len(layer.ops) == 11
    calls: list[int] = []

    def counting(i, op):
        def run(images, training=True):
            calls.append(i)
            return op(images, training=training)

        return run

    layer.ops = [counting(i, op) for i, op in enumerate(layer.ops)]
    images = T(
        N(batch[0])[:4]
    )  # a copy: some of Keras's operations write into their input on torch
    # The first call builds; on TensorFlow it also traces every branch once (not running them).
    layer(images, seed(4, 0))
    calls.clear()
    for n in range(1, 61):
        out = layer(images, seed(4, n))
        assert len(calls) == n  # exactly one operation computed per batch
        assert out.shape == images.shape and float32(out)
    assert len(set(calls)) >= 9  # the draw covers the operations (11 of them, 60 batches)


@pytest.mark.parametrize("level", ["moderate", "heavy"])
def test_a_batch_depends_on_its_seed_alone_not_on_earlier_batches(level, batch) -> None:
    """Batches are made ahead on a thread and resumed trials skip folds: no hidden RNG state."""
    images, onehot = batch
    augment = make_augment(level, seed=0)
    step = graph(lambda x, y, s: augment(x, y, s))
    seed_a, seed_b = seed(7, 1), seed(7, 2)
    first = step(images, onehot, seed_a)
    other = step(images, onehot, seed_b)
    for _ in range(3):
        step(images, onehot, seed_b)  # advances every layer's generator if they kept state
    again = step(images, onehot, seed_a)
    np.testing.assert_array_equal(N(first[0]), N(again[0]))
    np.testing.assert_array_equal(N(first[1]), N(again[1]))
    assert float(np.abs(N(first[0]) - N(other[0])).mean()) > 1.0
    fresh_augment = make_augment(level, seed=0)  # a new trial's layers
    fresh = graph(lambda x, y, s: fresh_augment(x, y, s))(images, onehot, seed_a)
    np.testing.assert_array_equal(N(first[0]), N(fresh[0]))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_every_level_runs_in_float32_under_a_mixed_precision_policy(policy, batch) -> None:
    images, onehot = batch
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        for level in AUGMENT_LEVELS:
            augment = make_augment(level)
            out = graph(lambda x, y, s, a=augment: a(x, y, s))(images, onehot, seed(1, 1))
            assert float32(out[0]) and np.isfinite(N(out[0])).all()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_robust_rotates_by_any_angle_not_only_the_dihedral_eight() -> None:
    asym = np.zeros((33, 33, 3), np.float32)
    asym[4:10, 16:29] = 255.0  # an off-centre bar: every rotation moves it somewhere else
    out = N(Geometry(zoom=0.0, shift=0.0, any_angle=True)(T(np.stack([asym] * 64)), seed(5, 0)))
    variants = [np.rot90(asym, k) for k in range(4)] + [np.rot90(asym[::-1], k) for k in range(4)]
    nearest = [min(np.abs(o - v).mean() for v in variants) for o in out]
    assert np.median(nearest) > 5  # most are far from all eight dihedral images
    # The bar's direction (principal axis of its bright pixels) spreads over the half-circle.
    angles = []
    for o in out[..., 0]:
        ys, xs = np.nonzero(o > 127)
        cov = np.cov(np.stack([xs - xs.mean(), ys - ys.mean()]))
        angles.append(np.degrees(np.arctan2(*np.linalg.eigh(cov)[1][:, -1][::-1])) % 180)
    assert np.histogram(angles, bins=6, range=(0, 180))[0].min() >= 3


def test_robust_layers_blur_add_noise_and_compress_part_of_a_batch(batch) -> None:
    from trainer.augment_layers import Defocus, Jpeg, SensorNoise

    images, _ = batch
    x = N(images)
    at = seed(7, 1)
    rough = lambda a: np.abs(np.diff(a, axis=2)).mean()  # noqa: E731
    for layer, sign in ((Defocus(p=0.5), -1), (SensorNoise(p=0.5), 1)):
        out = N(layer(images, at))
        changed = np.abs(out - x).mean(axis=(1, 2, 3)) > 0.05
        assert 0 < changed.sum() < len(x), layer.name
        assert all(
            sign * (rough(o) - rough(a)) > 0 for o, a, c in zip(out, x, changed, strict=True) if c
        ), layer.name
    out = N(Jpeg(p=0.5, quality=(15, 15))(images, at))
    changed = np.abs(out - x).mean(axis=(1, 2, 3)) > 0.05
    assert 0 < changed.sum() < len(x)
    k = int(np.flatnonzero(changed)[0])
    np.testing.assert_allclose(out[k], _jpeg_15(x[k]), atol=1e-3)


def _jpeg_15(image: np.ndarray) -> np.ndarray:
    """The codec the backend's Jpeg layer uses, on one image at quality 15."""
    if backend.TF:
        import tensorflow as tf

        return tf.image.adjust_jpeg_quality(image / 255.0, 15).numpy() * 255.0
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.rint(image).astype(np.uint8)).save(buffer, "JPEG", quality=15)
    return np.asarray(Image.open(buffer), np.float32)


def test_robust_reaches_the_sharpness_of_blurred_and_noisy_images_and_light_does_not(
    batch,
) -> None:
    """Per image, roughness (mean absolute neighbour difference) relative to the original: the
    blur corruption lowers it, the noise corruption raises it; robust training batches cover
    both, light ones (flips, rotations, zoom) neither."""
    from trainer.corruptions import corrupt

    images, onehot = batch
    x = N(images).astype(np.uint8)

    def rough(a):
        return np.abs(np.diff(a.astype(np.float32), axis=2)).mean(axis=(1, 2, 3))

    base = rough(x)
    blurred = np.median(rough(corrupt(x, "gaussian_blur")) / base)
    noisy = np.median(rough(corrupt(x, "gaussian_noise")) / base)
    seeds = [seed(0, s) for s in range(4)]

    def ratios(level):
        augment = make_augment(level)
        return np.concatenate([rough(N(augment(images, onehot, s)[0])) / base for s in seeds])

    robust, light = ratios("robust"), ratios("light")
    assert blurred < 0.9 < 1.1 < noisy
    assert (robust <= blurred).mean() > 0.015 and (robust >= noisy).mean() > 0.015
    assert (light <= blurred).mean() == 0 and (light >= noisy).mean() == 0


def _variants(a: np.ndarray) -> list[np.ndarray]:
    """The 8 dihedral images of ``a``: identity, 3 turns, mirror, mirror turned."""
    return [np.rot90(a, k) for k in range(4)] + [np.rot90(a[:, ::-1], k) for k in range(4)]


@pytest.mark.parametrize(("symmetry", "allowed"), [("mirror", {0, 4}), ("none", {0})])
def test_geometry_changes_orientation_only_as_the_symmetry_allows(symmetry, allowed) -> None:
    """Mirror data is only mirrored left-right (both ways seen); data with an up keeps it."""
    asym = np.arange(5 * 5 * 3, dtype="float32").reshape(5, 5, 3)
    out = N(Geometry(zoom=0.0, shift=0.0, symmetry=symmetry)(T(np.stack([asym] * 64)), seed(2, 0)))
    seen = {next(k for k, v in enumerate(_variants(asym)) if np.allclose(o, v)) for o in out}
    assert seen == allowed


def test_robust_tilts_upright_images_but_never_turns_them() -> None:
    """Under robust an upright image is tilted (so it changes) but stays closest to itself, never
    to a quarter or half turn, where dihedral data is turned by any angle."""
    glyph = np.zeros((32, 32, 3), np.float32)
    glyph[4:28, 8:13] = 255.0  # an L
    glyph[23:28, 8:26] = 255.0
    images = T(np.stack([glyph] * 48))
    for symmetry, upright in (("none", True), ("dihedral", False)):
        out = N(
            Geometry(zoom=0.0, shift=0.0, any_angle=True, symmetry=symmetry)(images, seed(4, 0))
        )
        nearest = [
            int(np.argmin([np.abs(o - np.rot90(glyph, k)).mean() for k in range(4)])) for o in out
        ]
        assert (set(nearest) == {0}) is upright
        assert not all(np.allclose(o, glyph) for o in out)


def test_kept_colour_keeps_the_hue_that_a_colour_shift_moves() -> None:
    """robust's colour step under colour keep varies brightness and contrast but not the hue
    (sensor noise and JPEG, which follow it, are not colour shifts)."""
    rng = np.random.default_rng(5)
    base = np.zeros((16, 16, 16, 3), np.float32)
    base[...] = rng.uniform(60, 200, (16, 1, 1, 3))  # one flat colour per image
    images = T(base)

    def hue(x: np.ndarray) -> np.ndarray:
        i = x @ np.array([0.596, -0.274, -0.322])
        q = x @ np.array([0.211, -0.523, 0.312])
        return np.angle(i + 1j * q)

    def moved(colour: str) -> float:
        step = make_augment("robust", seed=1, symmetry="none", colour=colour).layers[0]
        assert isinstance(step, Colour)
        out = N(step(images, seed(7, 0)))
        assert not np.allclose(out, base)  # brightness and contrast still vary
        centre = out[:, 6:10, 6:10].mean(axis=(1, 2))
        return float(np.max(np.abs(np.angle(np.exp(1j * (hue(centre) - hue(base[:, 0, 0])))))))

    assert moved("keep") < np.deg2rad(3.0)
    assert moved("shift") > np.deg2rad(6.0)


def test_heavy_drops_randaugments_rotation_where_turns_change_the_label() -> None:
    def ops(symmetry: str) -> set[str]:
        one_op = make_augment("heavy", symmetry=symmetry).one_op
        assert one_op is not None
        return {type(op).__name__ for op in one_op.ops}

    assert "RandomRotation" in ops("dihedral")
    assert "RandomRotation" not in ops("none") and "RandomRotation" not in ops("mirror")
