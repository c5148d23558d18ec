"""The "bloodmnist" spec without internet: offline errors, cached files, a local download."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from search.data import BLOODMNIST_CLASSES, DataError, load_dataset
from search.data import bloodmnist as bm

UNREACHABLE = "http://127.0.0.1:9/bloodmnist_64.npz"  # discard port: connection refused


def fake_medmnist(path: Path, size: int = 12) -> str:
    """Write a tiny MedMNIST-layout file with 8 classes; return its MD5."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 8).astype(np.uint8).reshape(n, 1)
    np.savez_compressed(path, **arrays)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for size in bm.BLOODMNIST_SIZES:
        monkeypatch.setitem(bm.BLOODMNIST_URLS, size, UNREACHABLE)


def test_nearest_published_size() -> None:
    assert bm.nearest_size(None) == 64
    assert [bm.nearest_size(s) for s in (16, 46, 64, 96, 100, 180, 512)] == [
        28, 64, 64, 128, 128, 224, 224,
    ]  # fmt: skip


def test_offline_error_names_url_cache_path_and_way_out(offline: None, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("bloodmnist", cache_dir=tmp_path)
    message = str(info.value)
    assert "cannot download BloodMNIST" in message
    assert UNREACHABLE in message
    assert str(tmp_path / "bloodmnist_64.npz") in message
    assert "--data PATH" in message
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_file_placed_in_the_cache_is_used_without_download(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "bloodmnist_128.npz"
    monkeypatch.setitem(bm.BLOODMNIST_MD5, 128, fake_medmnist(target, size=20))
    ds = load_dataset("bloodmnist", image_size=96, cache_dir=tmp_path)  # 96 -> the 128 file
    assert ds.images.shape == (32, 96, 96, 3)
    assert ds.class_names == BLOODMNIST_CLASSES
    note = json.loads((tmp_path / "bloodmnist_128.npz.sha256").read_text())
    assert note["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()

    def no_rehash(path: Path) -> tuple[str, str]:
        raise AssertionError("a checked file should not be hashed again")

    monkeypatch.setattr(bm, "_hash_file", no_rehash)
    assert len(load_dataset("bloodmnist", image_size=128, cache_dir=tmp_path)) == 32


def test_cached_file_with_the_wrong_md5_is_refused(offline: None, tmp_path: Path) -> None:
    target = tmp_path / "bloodmnist_64.npz"
    fake_medmnist(target)
    with pytest.raises(DataError, match="official MedMNIST MD5") as info:
        load_dataset("bloodmnist", image_size=64, cache_dir=tmp_path)
    assert str(target) in str(info.value) and "--data" in str(info.value)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for ``tmp_path/served``: (base URL, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_is_checked_then_moved_into_place(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = server
    md5 = fake_medmnist(served / "remote.npz")
    monkeypatch.setitem(bm.BLOODMNIST_URLS, 64, f"{base}/remote.npz")
    monkeypatch.setitem(bm.BLOODMNIST_MD5, 64, md5)
    cache = tmp_path / "cache"
    ds = load_dataset("bloodmnist", cache_dir=cache)
    assert len(ds) == 32 and ds.images.shape[1:] == (12, 12, 3)  # native size kept
    assert sorted(p.name for p in cache.iterdir()) == [
        "bloodmnist_64.npz",
        "bloodmnist_64.npz.sha256",
    ]


def test_download_with_the_wrong_md5_saves_nothing(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = server
    fake_medmnist(served / "remote.npz")
    monkeypatch.setitem(bm.BLOODMNIST_URLS, 64, f"{base}/remote.npz")
    with pytest.raises(DataError, match=r"downloaded file has MD5 .*nothing was saved"):
        load_dataset("bloodmnist", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]
