"""The image layers of the augmentation levels (``trainer.augment``), each called as
``layer(images, seed)`` with a [2] integer seed, so a batch's draws depend on its seed alone.

They are this module's own layers on ``keras.ops`` (with ``trainer.backend`` for seeded draws,
branches and JPEG, so they run on every Keras backend), with the parameter ranges of
the Keras layers they replace, because those take several passes over every pixel: at 96 px,
batch 32, on 2 CPU cores ``RandomZoom`` + ``RandomTranslation`` + the rotation/flip cost 30 ms a
batch, and ``RandomColorJitter`` (two RGB<->HSV round trips) + ``RandomGaussianBlur`` (blurs the
whole batch, keeps 15%) + ``GaussianNoise`` 73 ms, together as much as a MobileNetV3Small training
step. Here zoom, shift, rotation and flip are one affine warp per image, brightness, contrast,
saturation and hue one 3x3 colour matrix per image, and only the chosen images are blurred
(``bench/pipeline.py`` measures the effect on training throughput).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from trainer import backend

ops = keras.ops
uniform = backend.uniform


def _matrices(entries: list, rows: int) -> object:
    """N x rows x rows matrices from ``rows * rows`` N-vectors, row by row."""
    return ops.reshape(ops.stack(entries, axis=1), (-1, rows, rows))


def dihedral_matrices(draws, square: bool):
    """N x 2 x 2 matrices of the dihedral group from N x 2 uniform draws: rotate k * 90 degrees
    (square images only), then flip left-right with probability 1/2. All 8 equally likely."""
    zero, one = ops.zeros_like(draws[:, 0]), ops.ones_like(draws[:, 0])
    flip = ops.where(draws[:, 1] < 0.5, -one, one)
    mirror = _matrices([flip, zero, zero, one], 2)
    if square:
        k = ops.mod(ops.floor(draws[:, 0] * 4.0), 4.0)
        angle = k * (math.pi / 2)
        cos, sin = ops.round(ops.cos(angle)), ops.round(ops.sin(angle))
        rotate = _matrices([cos, -sin, sin, cos], 2)
    else:
        vertical = ops.where(draws[:, 0] < 0.5, -one, one)
        rotate = _matrices([one, zero, zero, vertical], 2)
    return ops.matmul(rotate, mirror)


def rotation_matrices(draws):
    """N x 2 x 2: rotation by a uniform angle in [0, 360) degrees, then a left-right flip with
    probability 1/2 (for images whose label survives any turn and a mirror)."""
    angle = 2.0 * math.pi * draws[:, 0]
    cos, sin = ops.cos(angle), ops.sin(angle)
    zero, one = ops.zeros_like(angle), ops.ones_like(angle)
    flip = ops.where(draws[:, 1] < 0.5, -one, one)
    return ops.matmul(_matrices([cos, -sin, sin, cos], 2), _matrices([flip, zero, zero, one], 2))


# Under ``robust``, images whose label does not survive a quarter turn still tilt by up to this
# many degrees either way (a slide or a page lies a little askew); never enough to turn a 6 into a 9.
TILT_DEGREES = 10.0


def upright_matrices(draws, mirror: bool, tilt: float):
    """N x 2 x 2 for images with an up: a tilt by up to ``tilt`` degrees either way, then (with
    ``mirror``) a left-right flip with probability 1/2. No quarter turns, no upside down."""
    angle = math.radians(tilt) * (2.0 * draws[:, 0] - 1.0)
    cos, sin = ops.cos(angle), ops.sin(angle)
    zero, one = ops.zeros_like(angle), ops.ones_like(angle)
    flip = ops.where(draws[:, 1] < 0.5, -one, one) if mirror else one
    return ops.matmul(_matrices([cos, -sin, sin, cos], 2), _matrices([flip, zero, zero, one], 2))


class Geometry(keras.layers.Layer):
    """Random orientation (as the data's ``symmetry`` allows), zoom and shift: one warp per image.

    Output pixel p is read from input ``c + z * D (p - c) + t`` (c the centre, D the orientation,
    z in [1 - zoom, 1 + zoom], t up to ``shift`` of the size), bilinear with reflected borders,
    like ``RandomZoom`` and ``RandomTranslation`` with ``fill_mode="reflect"``. D is one of the 8
    dihedral matrices (``dihedral``), a left-right mirror or not (``mirror``) or the identity
    (``none``); ``any_angle`` (``robust``) turns the dihedral by any angle and tilts the others by
    up to ``TILT_DEGREES``. With ``zoom = shift = 0`` and no ``any_angle`` it only moves pixels.
    """

    def __init__(
        self, zoom: float, shift: float, any_angle: bool = False, symmetry: str = "dihedral"
    ) -> None:
        super().__init__(name="geometry", dtype="float32")
        self.zoom = zoom
        self.shift = shift
        self.any_angle = any_angle
        self.symmetry = symmetry

    def call(self, images, seed):
        n = ops.shape(images)[0]
        h, w = images.shape[1], images.shape[2]
        draws = uniform(seed, (n, 5), salt=1)
        if self.symmetry != "dihedral":
            tilt = TILT_DEGREES if self.any_angle else 0.0
            d = upright_matrices(draws[:, :2], mirror=self.symmetry == "mirror", tilt=tilt)
        elif self.any_angle:
            d = rotation_matrices(draws[:, :2])
        else:
            d = dihedral_matrices(draws[:, :2], square=h == w)
        z = 1.0 + self.zoom * (2.0 * draws[:, 2] - 1.0)
        tx = self.shift * w * (2.0 * draws[:, 3] - 1.0)
        ty = self.shift * h * (2.0 * draws[:, 4] - 1.0)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        a0, a1, b0, b1 = (z * d[:, i, j] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        a2 = cx - (a0 * cx + a1 * cy) + tx
        b2 = cy - (b0 * cx + b1 * cy) + ty
        zero = ops.zeros_like(z)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
        return ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="reflect"
        )


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32
)
_GREY = np.ones((3, 1), np.float32) * _LUMA[None, :]  # rows: the luma weights
_YIQ_INV = np.linalg.inv(_YIQ).astype(np.float32)


class Colour(keras.layers.Layer):
    """Brightness, contrast, saturation and hue as one colour matrix and offset per image.

    The ranges are ``RandomColorJitter``'s: brightness adds up to ``brightness`` x 255, contrast
    scales each channel about its image mean by 1 +- ``contrast``, saturation draws Keras's factor
    f in ``saturation`` and scales chroma by f / (1 - f) (0.5: unchanged), hue turns the colour
    circle by up to +-``hue`` / 2 of a turn. Saturation blends with the luma grey and hue rotates
    the YIQ chroma plane, both linear, so the four steps compose to ``A x + o``.
    """

    def __init__(
        self,
        brightness: float = 0.15,
        contrast: float = 0.2,
        saturation: tuple[float, float] = (0.35, 0.65),
        hue: float = 0.04,
        p: float = 1.0,
    ) -> None:
        super().__init__(name="colour", dtype="float32")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.p = p  # the share of images changed; the others keep their colours

    def call(self, images, seed):
        n = ops.shape(images)[0]
        d = uniform(seed, (n, 4), salt=2)
        if self.p < 1.0:  # a draw of 0.5 is the middle of every range: no change
            keep = uniform(seed, (n,), salt=17) >= self.p
            d = ops.where(keep[:, None], 0.5, d)
        bright = self.brightness * 255.0 * (2.0 * d[:, 0] - 1.0)
        scale = 1.0 + self.contrast * (2.0 * d[:, 1] - 1.0)
        lo, hi = self.saturation
        f = lo + (hi - lo) * d[:, 2]
        chroma = f / (1.0 - f + 1e-7)
        theta = 2.0 * math.pi * (self.hue / 2.0) * (2.0 * d[:, 3] - 1.0)
        eye = ops.convert_to_tensor(np.eye(3, dtype=np.float32))
        grey = ops.convert_to_tensor(_GREY)
        sat = chroma[:, None, None] * eye[None] + (1.0 - chroma)[:, None, None] * grey[None]
        cos, sin = ops.cos(theta), ops.sin(theta)
        one, zero = ops.ones_like(theta), ops.zeros_like(theta)
        rot = _matrices([one, zero, zero, zero, cos, -sin, zero, sin, cos], 3)
        yiq, yiq_inv = ops.convert_to_tensor(_YIQ), ops.convert_to_tensor(_YIQ_INV)
        hue = ops.einsum("ij,njk,kl->nil", yiq_inv, rot, yiq)
        colour = ops.matmul(hue, sat)  # N x 3 x 3
        mean = ops.mean(images, axis=(1, 2))  # per image and channel
        shifted = (1.0 - scale)[:, None] * mean + bright[:, None]
        offset = ops.einsum("ndc,nc->nd", colour, shifted)
        matrix = scale[:, None, None] * colour
        out = ops.einsum("nhwc,ndc->nhwd", images, matrix)
        return out + offset[:, None, None, :]


def on_chosen(images, chosen, fn):
    """``fn`` computed on the images at ``chosen`` (K indices) only and put back; with none
    chosen the batch is returned as it is (padding and JPEG reject an empty batch)."""

    def apply():
        return ops.scatter_update(images, chosen[:, None], fn(ops.take(images, chosen, axis=0)))

    return backend.cond(ops.shape(chosen)[0] > 0, apply, lambda: images)


def separable_blur(x, k):
    """``x`` convolved with the odd-length kernel ``k`` along width, then height, borders
    reflected."""
    taps = int(k.shape[0])
    r = taps // 2
    x = ops.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    x = sum(k[i] * x[:, :, i : i + x.shape[2] - 2 * r] for i in range(taps))
    return sum(k[i] * x[:, i : i + x.shape[1] - 2 * r] for i in range(taps))


class Blur(keras.layers.Layer):
    """``RandomGaussianBlur(factor, kernel_size=3, sigma)``'s draws, computed on the chosen images.

    Each image is blurred with a probability drawn in [0, ``factor``] (as Keras does), with one
    sigma per batch in (0, ``sigma``], by a separable 3-tap Gaussian with reflected borders. Only
    the chosen images (15% on average at factor 0.3) are blurred, where Keras blurs the whole
    batch and then selects.
    """

    def __init__(self, factor: float = 0.3, sigma: float = 1.0) -> None:
        super().__init__(name="blur", dtype="float32")
        self.factor = factor
        self.sigma = sigma

    def call(self, images, seed):
        n = ops.shape(images)[0]
        d = uniform(seed, (n, 2), salt=3)
        chosen = backend.rows_where(d[:, 1] < self.factor * d[:, 0])
        sigma = self.sigma * uniform(seed, (), salt=4) + 1e-6
        side = ops.exp(-1.0 / (2.0 * sigma**2))
        k = ops.stack([side, ops.ones_like(side), side]) / (1.0 + 2.0 * side)

        # None chosen in 0.5% of batches of 32: on_chosen then leaves the batch as it is.
        return on_chosen(images, chosen, lambda x: separable_blur(x, k))


class OneOp(keras.layers.Layer):
    """RandAugment's operations, one drawn per batch, with only the drawn one computed.

    ``keras.layers.RandAugment`` also draws its operations per batch, but computes all eleven
    on every batch and then selects (about 20x the cost of one operation). This uses the same
    layer's own operations, configured by its ``factor`` and ``value_range``.
    """

    def __init__(self, rand_augment: keras.layers.RandAugment) -> None:
        super().__init__(name="rand_augment_one_op", dtype="float32")
        self.ops = [getattr(rand_augment, name) for name in rand_augment._AUGMENT_LAYERS]

    def call(self, images, seed):
        index = ops.cast(uniform(seed, (), salt=5) * len(self.ops), "int32")
        branches = [
            lambda op=op: ops.cast(op(images, training=True), images.dtype) for op in self.ops
        ]
        return backend.switch(ops.minimum(index, len(self.ops) - 1), branches)


class Noise(keras.layers.Layer):
    """Zero-mean pixel noise of standard deviation ``stddev`` x 255, drawn uniform (a third of the
    cost of Gaussian draws on CPU; at about 4 grey levels the shape does not matter)."""

    def __init__(self, stddev: float) -> None:
        super().__init__(name="pixel_noise", dtype="float32")
        self.half_width = stddev * 255.0 * math.sqrt(3.0)

    def call(self, images, seed):
        return images + self.half_width * (2.0 * uniform(seed, ops.shape(images), salt=7) - 1.0)


class Defocus(keras.layers.Layer):
    """Out-of-focus blur: with probability ``p`` an image is blurred by a 7-tap separable
    Gaussian whose sigma is drawn per batch in [0.3, ``max_sigma``] pixels at 96 px (scaled with
    the image size), borders reflected."""

    def __init__(self, p: float = 0.25, max_sigma: float = 2.0) -> None:
        super().__init__(name="defocus", dtype="float32")
        self.p = p
        self.max_sigma = max_sigma

    def call(self, images, seed):
        n = ops.shape(images)[0]
        chosen = backend.rows_where(uniform(seed, (n,), salt=11) < self.p)
        scale = min(images.shape[1], images.shape[2]) / 96.0
        sigma = scale * (0.3 + (self.max_sigma - 0.3) * uniform(seed, (), salt=12))
        taps = ops.arange(-3.0, 4.0, dtype="float32")
        k = ops.exp(-0.5 * (taps / sigma) ** 2)
        k = k / ops.sum(k)

        return on_chosen(images, chosen, lambda x: separable_blur(x, k))


class SensorNoise(keras.layers.Layer):
    """With probability ``p`` an image gets zero-mean noise of a standard deviation drawn per
    image in [0, ``max_std``] grey levels (uniform draws of that deviation, as ``Noise``)."""

    def __init__(self, p: float = 0.3, max_std: float = 20.0) -> None:
        super().__init__(name="sensor_noise", dtype="float32")
        self.p = p
        self.max_std = max_std

    def call(self, images, seed):
        n = ops.shape(images)[0]
        d = uniform(seed, (n, 2), salt=13)
        std = ops.where(d[:, 0] < self.p, self.max_std * d[:, 1], 0.0)
        unit = 2.0 * uniform(seed, ops.shape(images), salt=14) - 1.0
        return images + (std * math.sqrt(3.0))[:, None, None, None] * unit


class Jpeg(keras.layers.Layer):
    """JPEG re-compression: with probability ``p`` an image is encoded and decoded at a quality
    drawn per batch in ``quality`` (TensorFlow's codec on TensorFlow, Pillow's on the others;
    the chosen images only)."""

    def __init__(self, p: float = 0.25, quality: tuple[int, int] = (15, 60)) -> None:
        super().__init__(name="jpeg", dtype="float32")
        self.p = p
        self.quality = quality

    def call(self, images, seed):
        n = ops.shape(images)[0]
        chosen = backend.rows_where(uniform(seed, (n,), salt=15) < self.p)
        lo, hi = self.quality
        quality = ops.cast(lo + (hi - lo + 1) * uniform(seed, (), salt=16), "int32")

        def compress(x):
            return backend.jpeg(ops.clip(x, 0.0, 255.0) / 255.0, quality) * 255.0

        return on_chosen(images, chosen, compress)
