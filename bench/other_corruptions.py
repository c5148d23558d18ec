"""Exported models under corruption kinds ``trainer/corruptions.py`` does not name.

``bench/end_to_end.py`` scores robustness under the six corruptions of ``trainer/corruptions.py``.
A model that only resisted those six would still fail on a second microscope's other changes, so
this scores exported model folders on the same held-out quarter under 17 further kinds: a second
camera's photometric changes (low light, white balance, a tone curve, sharpening, dead pixels),
other blurs and noises (motion blur, a disc-shaped defocus, pixelation, shot and speckle noise),
saturation, vignetting, zoom, translation, elastic warps, occlusion and grey scale. None of them
was used to choose anything in the project; they measure how far robustness generalises.

Every model folder given (and, with ``--hand``, ``bench/end_to_end.py``'s hand recipe, trained
here on the images the quarter leaves) is scored in the same run on the same corrupted images
(each kind is seeded), and the page ``docs/other_corruptions.md`` is written with one column per
model.

    python bench/other_corruptions.py [NAME=MODEL_DIR ...] [--hand] [--holdout-seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import ROOT, machine  # noqa: I001
from end_to_end import described, load_split, predicted, run_hand

PAGE = ROOT / "docs" / "other_corruptions.md"
RESULTS = ROOT / "docs" / "other_corruptions.json"
Kind = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _convolve(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.convolve(images.astype(np.float32), kernel[None, :, :, None], mode="reflect")


def low_light(x, rng):  # a dimmer lamp or a shorter exposure, with the camera's read noise
    return _u8(x * 0.45 + rng.normal(0, 4, x.shape))


def white_balance(x, rng):  # another camera's channel gains
    return _u8(x * rng.uniform(0.75, 1.25, size=(len(x), 1, 1, 3)))


def gamma(x, rng):
    g = rng.choice([0.6, 1.6], size=(len(x), 1, 1, 1))
    return _u8(255.0 * (x / 255.0) ** g)


def sharpen(x, rng):
    from PIL import Image, ImageFilter

    mask = ImageFilter.UnsharpMask(radius=2, percent=200, threshold=2)
    return np.stack([np.asarray(Image.fromarray(im).filter(mask)) for im in x])


def salt_pepper(x, rng):
    out = x.copy()
    draw = rng.random(x.shape[:3])
    out[draw < 0.02], out[draw > 0.98] = 0, 255
    return out


def motion_blur(x, rng):
    from scipy import ndimage

    out = np.empty_like(x)
    for i, im in enumerate(x):
        k = np.zeros((7, 7), np.float32)
        k[3, :] = 1.0
        k = ndimage.rotate(k, rng.uniform(0, 180), reshape=False, order=1)
        out[i] = _u8(_convolve(im[None], k / k.sum())[0])
    return out


def disc_defocus(x, rng):
    y, xx = np.mgrid[-2:3, -2:3]
    k = ((xx * xx + y * y) <= 4).astype(np.float32)
    return _u8(_convolve(x, k / k.sum()))


def pixelate(x, rng):
    from PIL import Image

    h, w = x.shape[1:3]

    def one(im):
        small = Image.fromarray(im).resize((w * 5 // 12, h * 5 // 12), Image.BOX)
        return np.asarray(small.resize((w, h), Image.NEAREST))

    return np.stack([one(im) for im in x])


def shot_noise(x, rng):
    return _u8(rng.poisson(x / 255.0 * 30.0) / 30.0 * 255.0)


def speckle(x, rng):
    return _u8(x + x * rng.normal(0, 0.15, x.shape))


def _luma(x: np.ndarray) -> np.ndarray:
    """Each pixel's grey level (ITU-R 601 weights), keeping a channel axis of 1."""
    return x.astype(np.float32) @ np.array([[0.299], [0.587], [0.114]], np.float32)


def saturation(x, rng):
    grey = _luma(x)
    f = rng.choice([0.3, 2.0], size=(len(x), 1, 1, 1))
    return _u8(grey + f * (x - grey))


def vignette(x, rng):
    h, w = x.shape[1:3]
    y, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(y - (h - 1) / 2, xx - (w - 1) / 2) / (0.7 * max(h, w))
    return _u8(x * (1 - 0.6 * d**2)[None, ..., None])


def zoom(x, rng):
    from scipy import ndimage

    h = x.shape[1]
    out = np.empty_like(x)
    for i, im in enumerate(x):
        z = ndimage.zoom(im, (s := rng.choice([0.8, 1.25]), s, 1), order=1)
        if z.shape[0] >= h:
            o = (z.shape[0] - h) // 2
            out[i] = z[o : o + h, o : o + h]
        else:
            p = h - z.shape[0]
            out[i] = np.pad(z, ((p // 2, p - p // 2), (p // 2, p - p // 2), (0, 0)), "reflect")
    return out


def translate(x, rng):
    return np.stack([np.roll(im, tuple(rng.integers(-12, 13, 2)), (0, 1)) for im in x])


def elastic(x, rng):
    from scipy import ndimage

    h, w = x.shape[1:3]
    y, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty_like(x)
    for i, im in enumerate(x):
        dx, dy = (ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), 4) * 40 for _ in "xy")
        coords = [y + dy, xx + dx]
        out[i] = np.stack(
            [
                ndimage.map_coordinates(im[..., c], coords, order=1, mode="reflect")
                for c in range(3)
            ],
            -1,
        )
    return out


def occlusion(x, rng):
    out = x.copy()
    side = x.shape[1] // 4
    for im in out:
        y, xx = rng.integers(0, x.shape[1] - side, 2)
        im[y : y + side, xx : xx + side] = 128
    return out


def grey_scale(x, rng):
    return _u8(np.repeat(_luma(x), 3, -1))


CAMERA: dict[str, Kind] = {
    "low_light": low_light,
    "white_balance": white_balance,
    "gamma": gamma,
    "sharpen": sharpen,
    "salt_pepper": salt_pepper,
}
OTHER: dict[str, Kind] = {
    "motion_blur": motion_blur,
    "disc_defocus": disc_defocus,
    "pixelate": pixelate,
    "shot_noise": shot_noise,
    "speckle": speckle,
    "saturation": saturation,
    "vignette": vignette,
    "zoom": zoom,
    "translate": translate,
    "elastic": elastic,
    "occlusion": occlusion,
    "grey_scale": grey_scale,
}
GROUPS = {"camera": CAMERA, "other": OTHER, "all 17": {**CAMERA, **OTHER}}


def corrupted_sets(images: np.ndarray) -> dict[str, np.ndarray]:
    """Every kind applied to ``images`` (uint8), each seeded by its position, so every model
    in a run (and every run) sees the same images."""
    kinds = GROUPS["all 17"]
    return {
        name: fn(images, np.random.default_rng(1000 + i))
        for i, (name, fn) in enumerate(kinds.items())
    }


def main() -> None:
    import keras

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("models", nargs="*", help="NAME=MODEL_DIR: an exported model folder")
    p.add_argument("--hand", action="store_true", help="also train and score the hand recipe")
    p.add_argument("--holdout-seed", type=int, default=0)
    args = p.parse_args()
    if not args.models and not args.hand:
        raise SystemExit("nothing to score: give NAME=MODEL_DIR folders, --hand, or both")
    named: list[tuple[str, Path]] = []
    for item in args.models:
        name, sep, folder = item.partition("=")
        path = Path(folder) / "model.keras"
        if not sep or not path.is_file():
            raise SystemExit(f"{item!r}: give NAME=MODEL_DIR, a folder holding model.keras")
        named.append((name, Path(folder)))
    train, test, split = load_split(False, args.holdout_seed)
    images = test.images.astype(np.uint8)
    sets = {"clean": images, **corrupted_sets(images)}
    print(f"{len(test)} test images ({split}), {len(sets) - 1} kinds", flush=True)
    models = [(n, lambda f=f: keras.models.load_model(f / "model.keras")) for n, f in named]
    what = {n: _described(f) for n, f in named}
    if args.hand:
        models.append(("hand", lambda: run_hand(train, "light")[0]))
        what["hand"] = "bench/end_to_end.py's hand recipe, trained in this run on the other images"
    scores: dict[str, dict[str, float]] = {}
    for name, load in models:
        model = load()
        scores[name] = {
            kind: float(np.mean(predicted(model, x) == test.labels)) for kind, x in sets.items()
        }
        for group, kinds in GROUPS.items():
            scores[name][f"mean {group}"] = float(np.mean([scores[name][k] for k in kinds]))
        print(name, json.dumps({k: round(v, 4) for k, v in scores[name].items()}), flush=True)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS.write_text(
        json.dumps(
            {
                "split": split,
                "ran": when,
                "models": what,
                "scores": scores,
            },
            indent=1,
        )
    )
    names = [n for n, _ in models]
    rows = ["clean", "mean all 17", "mean camera", *CAMERA, "mean other", *OTHER]
    lines = [
        "# Other corruptions: how far robustness reaches beyond the six it is measured on",
        "",
        f"`python bench/other_corruptions.py {' '.join(f'{n}=DIR' for n, _ in named)}"
        f"{' --hand' if args.hand else ''}`, run "
        f"{when}. Accuracy on the {split} ({len(test)} real images no model trained on) under "
        "17 corruption kinds `trainer/corruptions.py` does not name (definitions in "
        "`bench/other_corruptions.py`; none was used to choose anything): a second camera's "
        "photometric changes (`camera`) and other blurs, noises, colour and geometric changes "
        "(`other`).",
        "",
        "| kind | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for kind in rows:
        label = f"**{kind}**" if kind.startswith("mean") or kind == "clean" else kind
        lines.append(f"| {label} | " + " | ".join(f"{scores[n][kind]:.4f}" for n in names) + " |")
    lines += ["", "Models:", ""] + [f"- {n}: {what[n]}" for n in names]
    lines += ["", f"Machine: {machine()}", ""]
    PAGE.write_text("\n".join(lines))
    print(f"wrote {PAGE.relative_to(ROOT)}")


def _described(folder: Path) -> str:
    try:
        return described(folder)
    except (OSError, KeyError, ValueError):
        return str(folder)


if __name__ == "__main__":
    main()
