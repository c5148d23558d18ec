"""The fold codec: every reader of a study's ``fold_of`` gets back the folds that were stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.engine.worker import load_worker_data
from trainer.folds import MAX_FOLDS, decode_folds, encode_folds, make_folds


@pytest.mark.parametrize("k", [2, 10, 11, 23, MAX_FOLDS])
def test_folds_round_trip_through_the_study_and_the_workers_file(k: int, tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), 40)
    folds = make_folds(labels, k, seed=1)
    code = encode_folds(folds, len(labels))
    path = tmp_path / "data.npz"
    np.savez(
        path,
        images=np.zeros((len(labels), 2, 2, 3), np.uint8),
        labels=labels,
        class_names=np.array(["a", "b", "c", "d"]),
        fold_of=np.array(code),
    )
    _, from_worker = load_worker_data(str(path))
    for decoded in (decode_folds(code), from_worker):
        assert len(decoded) == k
        for got, want in zip(decoded, folds, strict=True):
            assert np.array_equal(got.val, np.sort(want.val))
            assert np.array_equal(got.train, np.sort(want.train))


def test_more_folds_than_the_codec_holds_is_refused() -> None:
    labels = np.repeat(np.arange(2), MAX_FOLDS + 1)
    with pytest.raises(ValueError, match=f"at most {MAX_FOLDS}"):
        encode_folds(make_folds(labels, MAX_FOLDS + 1, seed=0), len(labels))


def test_a_damaged_fold_string_is_an_error_not_a_wrong_split() -> None:
    with pytest.raises(ValueError, match="name no fold"):
        decode_folds("01!0")


def test_a_fold_string_with_a_gap_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no images in folds \[1\]"):
        decode_folds("0202")


def test_a_worker_reads_its_folds_without_optuna_or_sqlalchemy(tmp_path: Path) -> None:
    """The workers decode the split in milliseconds: no storage stack imported for it."""
    import subprocess
    import sys

    labels = np.repeat(np.arange(2), 10)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        images=np.zeros((20, 2, 2, 3), np.uint8),
        labels=labels,
        class_names=np.array(["a", "b"]),
        fold_of=np.array(encode_folds(make_folds(labels, 2, seed=0), 20)),
    )
    code = (
        "import sys; from search.engine.worker import load_worker_data; load_worker_data(sys.argv[1]);"
        "bad = [m for m in ('optuna', 'sqlalchemy', 'tensorflow') if m in sys.modules];"
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
