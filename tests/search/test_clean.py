"""Cleaning on real blood-cell images with known, injected dirt (search.cleaning, search.clean)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.clean import main
from search.cleaning import CleanOptions, CleanResult, clean
from search.cleaning.dirt import (
    cartoon,
    jpeg,
    paste_cartoon,
    photo_crop,
    sample_photos,
    shift_image,
)
from search.cleaning.near import near_pairs
from search.data import load_dataset
from tests.conftest import stratified_subset
from trainer.records import Dataset

ROOT = Path(__file__).resolve().parents[2]
NEUTROPHIL, EOSINOPHIL, LYMPHOCYTE, MONOCYTE, PLATELET = 6, 1, 4, 5, 7


@dataclass(frozen=True)
class Dirty:
    """A ~600-image real subset with dirt at known indices."""

    ds: Dataset
    n_real: int
    exact: tuple[int, int]  # source, in-class copy
    cross: tuple[int, int, int]  # source, same-label copy, other-label copy
    near: tuple[int, int]  # source, shifted + JPEG copy, same label
    near_cross: tuple[int, int]  # source, shifted + re-lit copy with another label
    outliers: tuple[int, ...]  # photo crops, a cartoon, a cartoon pasted over a cell
    flips: tuple[int, ...]  # platelets relabelled


def _first(labels: np.ndarray, label: int, skip: int = 0) -> int:
    return int(np.flatnonzero(labels == label)[skip])


@pytest.fixture(scope="module")
def dirty(real_arrays: dict[str, np.ndarray]) -> Dirty:
    base = stratified_subset(real_arrays, 600, seed=0)
    rng = np.random.default_rng(7)
    images, labels = base.images.copy(), base.labels.copy()
    n = len(base)
    a, b = _first(labels, EOSINOPHIL), _first(labels, LYMPHOCYTE)
    c, d = _first(labels, MONOCYTE), _first(labels, NEUTROPHIL)
    pasted = _first(labels, NEUTROPHIL, skip=1)
    flips = tuple(_first(labels, PLATELET, skip=k) for k in range(3))
    images[pasted] = paste_cartoon(images[pasted], rng)
    for i, new in zip(flips, (EOSINOPHIL, LYMPHOCYTE, NEUTROPHIL), strict=True):
        labels[i] = new
    china, flower = sample_photos()
    extra = [
        (images[a], EOSINOPHIL),  # n: exact copy, same label
        (images[b], LYMPHOCYTE),  # n + 1: exact copy, same label ...
        (images[b], NEUTROPHIL),  # n + 2: ... and one with another label
        (jpeg(shift_image(images[c], 2, -1), 70), MONOCYTE),  # n + 3
        (jpeg(np.clip(shift_image(images[d], -1, 1) * 1.05, 0, 255).astype(np.uint8), 80), 0),
        (photo_crop(china, 96, rng), 0),  # n + 5
        (photo_crop(flower, 96, rng), 3),  # n + 6
        (cartoon(96, rng), 2),  # n + 7
    ]
    all_images = np.concatenate([images, np.stack([e[0] for e in extra])])
    all_labels = np.concatenate([labels, np.array([e[1] for e in extra], dtype=np.int64)])
    return Dirty(
        ds=Dataset(all_images, all_labels, base.class_names),
        n_real=n,
        exact=(a, n),
        cross=(b, n + 1, n + 2),
        near=(c, n + 3),
        near_cross=(d, n + 4),
        outliers=(n + 5, n + 6, n + 7, pasted),
        flips=flips,
    )


@pytest.fixture(scope="module")
def cleaned(dirty: Dirty) -> CleanResult:
    return clean(dirty.ds, CleanOptions())


def _reasons(result: CleanResult) -> dict[int, str]:
    return {r.index: r.reason for r in result.removals}


def test_exact_duplicate_in_class_is_kept_once(dirty: Dirty, cleaned: CleanResult) -> None:
    source, copy = dirty.exact
    assert _reasons(cleaned).get(copy) == "exact_duplicate"
    assert source in cleaned.kept.tolist()
    removal = next(r for r in cleaned.removals if r.index == copy)
    assert removal.kept == source and set(removal.group) == {source, copy}
    assert f"#{source}" in removal.detail


def test_exact_duplicate_across_classes_drops_every_copy(
    dirty: Dirty, cleaned: CleanResult
) -> None:
    reasons = _reasons(cleaned)
    assert all(reasons.get(i) == "exact_conflict" for i in dirty.cross)
    assert not set(dirty.cross) & set(cleaned.kept.tolist())
    detail = next(r.detail for r in cleaned.removals if r.index == dirty.cross[0])
    assert "lymphocyte" in detail and "neutrophil" in detail


def test_shifted_recompressed_near_duplicate_is_found(dirty: Dirty, cleaned: CleanResult) -> None:
    source, copy = dirty.near
    assert _reasons(cleaned).get(copy) == "near_duplicate"
    assert source in cleaned.kept.tolist()
    reasons = _reasons(cleaned)
    assert all(reasons.get(i) == "near_conflict" for i in dirty.near_cross)


def test_similar_distinct_cells_are_not_near_duplicates(dirty: Dirty, cleaned: CleanResult) -> None:
    options = CleanOptions()
    real = dirty.ds.images[: dirty.n_real]
    pairs = near_pairs(real, options.near_distance)
    # Distinct real cells whose hashes alone would pass: the pixel check must reject them all.
    assert pairs.i.size > 10
    top = int(np.argmax(pairs.correlation))
    assert pairs.distance[top] <= options.near_distance
    assert pairs.correlation[top] < options.near_correlation
    near_removed = {
        r.index for r in cleaned.removals if r.reason in ("near_duplicate", "near_conflict")
    }
    assert near_removed == {dirty.near[1], *dirty.near_cross}


def test_photos_and_cartoons_are_outliers(dirty: Dirty, cleaned: CleanResult) -> None:
    reasons = _reasons(cleaned)
    assert all(reasons.get(i) == "outlier" for i in dirty.outliers)
    # Precision: no genuine cell image is called an outlier.
    assert set(cleaned.removed_by("outlier").tolist()) == set(dirty.outliers)
    scores = cleaned.outlier_scores[cleaned.kept]
    assert np.nanmax(scores) < CleanOptions().outlier_threshold


def test_everything_removed_was_injected_and_nothing_twice(
    dirty: Dirty, cleaned: CleanResult
) -> None:
    removed = [r.index for r in cleaned.removals]
    assert len(removed) == len(set(removed))
    expected = {dirty.exact[1], *dirty.cross, dirty.near[1], *dirty.near_cross, *dirty.outliers}
    assert set(removed) == expected
    assert sorted(removed + cleaned.kept.tolist()) == list(range(len(dirty.ds)))
    assert len(cleaned.dataset) == cleaned.summary["n_kept"] == len(cleaned.kept)
    np.testing.assert_array_equal(cleaned.dataset.images, dirty.ds.images[cleaned.kept])
    assert sum(cleaned.summary["removed"].values()) == len(removed)
    json.dumps(cleaned.summary)  # plain JSON, ready to store on a study


def test_flipped_labels_are_flagged_but_kept(dirty: Dirty, cleaned: CleanResult) -> None:
    flagged = {f.index: f for f in cleaned.mislabels}
    assert set(dirty.flips) <= set(flagged)
    assert all(flagged[i].predicted == PLATELET and not flagged[i].removed for i in dirty.flips)
    assert set(dirty.flips) <= set(cleaned.kept.tolist())
    assert not set(flagged) & {r.index for r in cleaned.removals}


def test_drop_mislabeled_removes_the_flagged(dirty: Dirty, cleaned: CleanResult) -> None:
    fingerprint = hashlib.sha256(dirty.ds.images.tobytes() + dirty.ds.labels.tobytes()).digest()
    dropped = clean(dirty.ds, CleanOptions(drop_mislabeled=True))
    flagged = {f.index for f in cleaned.mislabels}
    assert set(dropped.removed_by("mislabel").tolist()) == flagged
    assert not flagged & set(dropped.kept.tolist())
    after = hashlib.sha256(dirty.ds.images.tobytes() + dirty.ds.labels.tobytes()).digest()
    assert after == fingerprint  # clean() never changes its input


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("near_distance", -1),
        ("near_distance", 65),
        ("near_correlation", 1.5),
        ("outlier_threshold", 0.0),
        ("outlier_threshold", float("nan")),
        ("mislabel_confidence", 0.0),
        ("folds", 1),
    ],
)
def test_bad_options_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        CleanOptions(**{field: value})


def _write(path: Path, ds: Dataset) -> Path:
    np.savez(path, images=ds.images, labels=ds.labels, class_names=np.array(ds.class_names))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_npz(real_arrays: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = stratified_subset(real_arrays, 150, seed=1)
    rng = np.random.default_rng(3)
    images = np.concatenate(
        [base.images, base.images[:1], photo_crop(sample_photos()[0], 96, rng)[None]]
    )
    labels = np.concatenate([base.labels, base.labels[:1], [2]]).astype(np.int64)
    folder = tmp_path_factory.mktemp("cli")
    return _write(folder / "in.npz", Dataset(images, labels, base.class_names))


def test_cli_writes_dataset_and_report_and_leaves_input_alone(
    small_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _sha(small_npz)
    out = tmp_path / "clean.npz"
    assert main(["--data", str(small_npz), "--out", str(out), "-q"]) == 0
    assert _sha(small_npz) == before
    n_in = len(load_dataset(small_npz))
    report_dir = tmp_path / "clean_report"
    report = json.loads((report_dir / "report.json").read_text())
    removed = {r["index"]: r["reason"] for r in report["removed"]}
    assert removed[n_in - 2] == "exact_duplicate" and removed[n_in - 1] == "outlier"
    assert report["input"]["n_images"] == n_in
    with np.load(out) as z:
        assert set(z.files) == {"images", "labels", "class_names", "source_index"}
        kept = z["source_index"]
        assert sorted(kept.tolist() + list(removed)) == list(range(n_in))
        np.testing.assert_array_equal(z["images"], load_dataset(small_npz).images[kept])
    assert len(load_dataset(out)) == n_in - len(removed)
    summary = (report_dir / "summary.md").read_text()
    assert "exact duplicate" in summary and f"#{n_in - 1}" in summary
    with Image.open(report_dir / "removed.png") as png:
        assert png.format == "PNG" and png.size[0] > 500
    assert "kept" in capsys.readouterr().out


def test_cli_nothing_removed_still_writes_a_sheet(
    real_arrays: dict[str, np.ndarray], tmp_path: Path
) -> None:
    src = _write(tmp_path / "tiny.npz", stratified_subset(real_arrays, 40, seed=2))
    report_dir = tmp_path / "rep"
    code = main(
        ["--data", str(src), "--out", str(tmp_path / "o.npz"), "--report-dir", str(report_dir)]
        + ["--outlier-threshold", "inf", "--mislabel-confidence", "1.0", "-q"]
    )
    assert code == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["removed"] == [] and report["options"]["outlier_threshold"] is None
    with Image.open(report_dir / "removed.png") as png:
        assert png.size[1] < 200


def test_cli_missing_input_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.npz"
    assert main(["--data", str(missing), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(missing) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.npz").exists()


def test_cli_refuses_to_overwrite_the_input(
    small_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _sha(small_npz)
    assert main(["--data", str(small_npz), "--out", str(small_npz)]) == 2
    assert "input" in capsys.readouterr().err
    assert _sha(small_npz) == before


def test_cli_help_documents_every_flag_without_tensorflow() -> None:
    code = (
        "import sys; from search.clean import build_parser; import search.cleaning; "
        "print(build_parser().format_help()); assert 'tensorflow' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for flag in (
        "--data", "--out", "--image-size", "--near-distance", "--near-correlation",
        "--outlier-threshold", "--mislabel-confidence", "--drop-mislabeled", "--seed",
        "--report-dir", "--quiet",
    ):  # fmt: skip
        assert flag in done.stdout


def test_search_run_clean_cleans_before_the_study(real_arrays, tmp_path: Path) -> None:
    from tests.search.cli import load, run_cli

    ds = stratified_subset(real_arrays, 300, seed=5)
    images = np.concatenate([ds.images, ds.images[:3]])  # three exact in-class duplicates
    labels = np.concatenate([ds.labels, ds.labels[:3]])
    path = tmp_path / "dirty.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(ds.class_names))
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = run_cli(
        "--study",
        "quick",
        "--data",
        str(path),
        "--clean",
        "--trainer",
        "fake",
        "--image-size",
        "32",
        "--n-trials",
        "1",
        "--storage",
        url,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    study = load(url, "quick")
    cleaning = study.user_attrs["cleaning"]
    assert cleaning["removed"]["exact_duplicate"] == 3
    assert study.user_attrs["n_images"] == len(ds) == cleaning["n_kept"]


def test_images_that_are_merely_alike_are_not_removed_as_near_duplicates() -> None:
    """scikit-learn's real digits (8 x 8 scans, upscaled) correlate above the default threshold
    with many distinct digits of their class; the check raises its threshold instead of removing
    most of the set, and still removes a real copy."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = (d.images * 255 / 16).astype(np.uint8)
    grey = np.stack([np.asarray(Image.fromarray(i).resize((32, 32), Image.BICUBIC)) for i in small])
    images = np.repeat(grey[..., None], 3, -1)[:600]
    labels = d.target[:600].astype(np.int64)
    copy = np.roll(images[5], 1, axis=1)  # a shifted copy of image 5, same label
    ds = Dataset(
        np.concatenate([images, copy[None]]), np.append(labels, labels[5]), tuple("0123456789")
    )
    result = clean(ds, CleanOptions(outlier_threshold=float("inf")))
    assert result.summary["near_correlation_used"] > CleanOptions().near_correlation
    assert result.summary["removed"]["near_duplicate"] <= 0.05 * len(ds)
    assert {5, 600} & {r.index for r in result.removals}  # the copy is still found
