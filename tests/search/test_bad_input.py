"""Bad input never corrupts a study: one clear error, exit code 2, the storage unchanged."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require
from tests.search.cli import run_cli, snapshot

FAKE = ("--study", "quick", "--image-size", "32", "--trainer", "fake", "--n-trials", "2")


@pytest.fixture
def study_db(tmp_path: Path) -> tuple[str, Path]:
    """A finished 2-trial study on the demo data."""
    db = tmp_path / "db" / "studies.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    out = run_cli(*FAKE, "--data", "demo", "--storage", url, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    return url, db


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    require(done.returncode == 0, f"cannot mount a tmpfs here ({done.stderr.strip()})")


def test_invalid_storage_url(tmp_path: Path) -> None:
    out = run_cli(*FAKE, "--storage", "notadb://x/y", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("error:") == 1
    assert "not a usable SQLAlchemy URL" in out.stderr


def test_corrupt_npz_leaves_the_study_unchanged(study_db, tmp_path: Path) -> None:
    url, _ = study_db
    before = snapshot(url, "quick")
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    out = run_cli(*FAKE, "--data", str(bad), "--storage", url, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "broken.npz" in out.stderr and "Traceback" not in out.stderr
    assert snapshot(url, "quick") == before


def test_wrong_data_for_an_existing_study(study_db, real_arrays, tmp_path: Path) -> None:
    url, _ = study_db
    before = snapshot(url, "quick")
    path = tmp_path / "cells.npz"
    np.savez(path, images=real_arrays["images"][:400], labels=real_arrays["labels"][:400])
    out = run_cli(*FAKE, "--data", str(path), "--storage", url, cwd=tmp_path)
    assert out.returncode == 2 and "different data" in out.stderr
    assert snapshot(url, "quick") == before


def test_read_only_database(study_db, tmp_path: Path) -> None:
    url, db = study_db
    before = snapshot(url, "quick")
    immutable = subprocess.run(["chattr", "+i", str(db), str(db.parent)], capture_output=True)
    require(immutable.returncode == 0, "chattr +i is not permitted here")
    try:
        out = run_cli(*FAKE, "--data", "demo", "--storage", url, "--n-trials", "4", cwd=tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(db), str(db.parent)], check=True)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1
    assert "readonly" in out.stderr or "read-only" in out.stderr or "writable" in out.stderr
    assert snapshot(url, "quick") == before


def test_full_disk_for_the_database(study_db, tmp_path: Path) -> None:
    url, db = study_db
    small = tmp_path / "small"
    _mount_tmpfs(small, "2m")
    try:
        shutil.copy(db, small / "studies.db")
        small_url = f"sqlite:///{small / 'studies.db'}"
        before = snapshot(small_url, "quick")
        filler = small / "filler"
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=100000"], capture_output=True
        )
        out = run_cli(
            *FAKE, "--data", "demo", "--storage", small_url, "--n-trials", "4", cwd=tmp_path
        )
        assert out.returncode == 2, out.stderr[-2000:]
        assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1
        assert snapshot(small_url, "quick") == before
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_full_disk_for_the_workers_data(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    _mount_tmpfs(tiny, "64k")
    try:
        url = f"sqlite:///{tmp_path / 'studies.db'}"
        out = run_cli(*FAKE, "--data", "demo", "--storage", url, cwd=tmp_path, TMPDIR=str(tiny))
        assert out.returncode == 2, out.stderr[-2000:]
        assert "TMPDIR" in out.stderr and "Traceback" not in out.stderr
        # No half-written study: not even the database file or the artifacts folder.
        assert not (tmp_path / "studies.db").exists() and not (tmp_path / "artifacts").exists()
    finally:
        subprocess.run(["umount", "-l", str(tiny)], capture_output=True)


def test_read_only_artifacts_folder(study_db, tmp_path: Path) -> None:
    url, _ = study_db
    before = snapshot(url, "quick")
    folder = tmp_path / "ro_artifacts"
    folder.mkdir()
    immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    require(immutable.returncode == 0, "chattr +i is not permitted here")
    try:
        out = run_cli(
            *FAKE,
            "--data",
            "demo",
            "--storage",
            url,
            "--n-trials",
            "4",
            "--artifacts",
            str(folder / "sub"),
            cwd=tmp_path,
        )
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "artifacts folder" in out.stderr and "--artifacts" in out.stderr
    assert snapshot(url, "quick") == before


def test_artifacts_folder_made_by_another_host_meanwhile_is_used_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts starting together both see the folder missing; the slower mkdir must not fail."""
    from search.engine import session
    from search.engine.request import RunRequest

    folder = tmp_path / "shared" / "artifacts"
    real_mkdir = Path.mkdir

    def the_other_host_was_first(self: Path, *args, **kwargs) -> None:
        real_mkdir(self, *args, **kwargs)  # the other host's mkdir ...
        raise FileExistsError(17, "File exists", str(self))  # ... and then ours

    monkeypatch.setattr(Path, "mkdir", the_other_host_was_first)
    made = session._Created()
    args = RunRequest(artifacts=str(folder), storage=f"sqlite:///{tmp_path}/s.db")
    assert session._artifact_dir(args, made) == str(folder.resolve())
    monkeypatch.undo()
    assert folder.is_dir()
    assert made.folders == []  # not ours: a refused run must not remove another host's folder
    made.undo()
    assert folder.is_dir()


def _one_class_folder(root: Path) -> Path:
    from PIL import Image

    folder = root / "cells" / "neutrophil"
    folder.mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (32, 32), (i * 10, 80, 120)).save(folder / f"{i}.png")
    return root / "cells"


def _text_as_png(root: Path) -> Path:
    data = _one_class_folder(root)
    (data / "basophil").mkdir()
    (data / "basophil" / "0.png").write_text("not an image")
    return data


def _empty_folder(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def _unwritable_artifacts(root: Path) -> tuple[str, ...]:
    ro = root / "ro"
    ro.mkdir()
    immutable = subprocess.run(["chattr", "+i", str(ro)], capture_output=True)
    require(immutable.returncode == 0, "chattr +i is not permitted here")
    return ("--data", "demo", "--artifacts", str(ro / "sub" / "dir"))


@pytest.mark.parametrize(
    "case",
    ["missing data", "one class", "text named .png", "empty folder", "unwritable artifacts"],
)
def test_exit_2_creates_nothing(case: str, tmp_path: Path) -> None:
    """No database, no artifacts folder, no temporary folder: exit 2 leaves the disk as it was."""
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    if case == "missing data":
        args: tuple[str, ...] = ("--data", str(tmp_path / "nope.npz"))
    elif case == "one class":
        args = ("--data", str(_one_class_folder(tmp_path)))
    elif case == "text named .png":
        args = ("--data", str(_text_as_png(tmp_path)))
    elif case == "empty folder":
        args = ("--data", str(_empty_folder(tmp_path)))
    else:
        args = _unwritable_artifacts(tmp_path)
    try:
        out = run_cli(*FAKE, *args, cwd=work, TMPDIR=str(tmp))
    finally:
        if case == "unwritable artifacts":
            subprocess.run(["chattr", "-i", str(tmp_path / "ro")], check=True)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
    assert sorted(p.name for p in work.iterdir()) == []  # no studies.db, no artifacts/
    assert list(tmp.iterdir()) == []  # no search-data-* folder
    if case == "unwritable artifacts":
        assert list((tmp_path / "ro").iterdir()) == []


def test_too_many_folds_is_refused_up_front(tmp_path: Path) -> None:
    out = run_cli(*FAKE, "--data", "demo", "--folds", "40", cwd=tmp_path, TMPDIR=str(tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "--folds must be at most 36" in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []
