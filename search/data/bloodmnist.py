"""Fetch BloodMNIST (MedMNIST v2) once into a cache folder, checked against its official MD5.

Files and MD5s are MedMNIST's own table (``medmnist/info.py`` in github.com/MedMNIST/MedMNIST,
Zenodo record 10519652). A download goes to a temporary file in the cache folder, is checked,
and only then renamed into place (``os.replace``), so an interrupted download never leaves a
file that looks complete. A cached file is checked once; a ``<file>.sha256`` note next to it
records its SHA-256, MD5, size and time so later loads skip the hash.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from search.atomic import atomic_write_bytes
from search.data.errors import DataError

BLOODMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
BLOODMNIST_FILES: dict[int, str] = {
    28: "bloodmnist.npz",
    64: "bloodmnist_64.npz",
    128: "bloodmnist_128.npz",
    224: "bloodmnist_224.npz",
}
BLOODMNIST_URLS: dict[int, str] = {
    size: f"https://zenodo.org/records/10519652/files/{name}?download=1"
    for size, name in BLOODMNIST_FILES.items()
}
BLOODMNIST_MD5: dict[int, str] = {
    28: "7053d0359d879ad8a5505303e11de1dc",
    64: "2b94928a2ae4916078ca51e05b6b800b",
    128: "adace1e0ed228fccda1f39692059dd4c",
    224: "b718ff6835fcbdb22ba9eacccd7b2601",
}
DEFAULT_SIZE = 64
TIMEOUT_S = 60.0
_CHUNK = 1 << 20

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``~/.cache/bloodcell-search``."""
    return Path.home() / ".cache" / "bloodcell-search"


def nearest_size(image_size: int | None) -> int:
    """The published size closest to ``image_size`` (ties go up, so we shrink, not enlarge)."""
    if image_size is None:
        return DEFAULT_SIZE
    return min(BLOODMNIST_SIZES, key=lambda s: (abs(s - image_size), -s))


def fetch_bloodmnist(size: int, cache_dir: Path | None = None) -> Path:
    """Path of the checked BloodMNIST file of ``size`` in ``cache_dir``, downloading if needed."""
    if size not in BLOODMNIST_FILES:
        raise DataError(
            f"no BloodMNIST file of size {size}",
            "bloodmnist",
            f"pick one of {list(BLOODMNIST_SIZES)}",
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / BLOODMNIST_FILES[size]
    if target.is_file():
        _check_cached(target, size)
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder ({exc})",
            str(cache),
            "pass a writable cache folder, or download the file yourself and use --data PATH",
        ) from exc
    _download(size, target)
    return target


def _check_cached(target: Path, size: int) -> None:
    expected = BLOODMNIST_MD5[size]
    stat = target.stat()
    note = _read_note(target)
    if (
        note.get("md5") == expected
        and note.get("bytes") == stat.st_size
        and note.get("mtime_ns") == stat.st_mtime_ns
    ):
        return
    log.info("checking the MD5 of %s", target)
    md5, sha256 = _hash_file(target)
    if md5 != expected:
        raise DataError(
            f"cached file has MD5 {md5}, but the official MedMNIST MD5 of "
            f"{BLOODMNIST_FILES[size]} is {expected}",
            str(target),
            "delete it so it is downloaded again, or pass --data with its path to load it as a "
            "plain .npz without this check",
        )
    _write_note(target, md5, sha256)


def _download(size: int, target: Path) -> None:
    url = BLOODMNIST_URLS[size]
    expected = BLOODMNIST_MD5[size]
    log.info("downloading %s to %s", url, target)
    tmp: Path | None = None
    try:
        with (
            urllib.request.urlopen(url, timeout=TIMEOUT_S) as response,
            tempfile.NamedTemporaryFile(
                dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
            ) as out,
        ):
            tmp = Path(out.name)
            md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
            while chunk := response.read(_CHUNK):
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != expected:
            raise DataError(
                f"downloaded file has MD5 {md5.hexdigest()}, expected {expected} (the official "
                f"MedMNIST MD5 of {target.name}); nothing was saved",
                url,
                "try again later (the download was cut short or altered), or download the file "
                f"yourself, put it at {target} and run again",
            )
        os.replace(tmp, target)
        tmp = None
        _write_note(target, md5.hexdigest(), sha256.hexdigest())
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"cannot download BloodMNIST ({type(exc).__name__}: {reason})",
            url,
            f"check the internet connection and run again; or download the file yourself and "
            f"put it at {target} (MD5 {expected}); or pass --data PATH to use a local .npz or "
            "folder of class folders (--data demo for synthetic data)",
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _hash_file(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def _note_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _read_note(target: Path) -> dict[str, object]:
    try:
        data = json.loads(_note_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_note(target: Path, md5: str, sha256: str) -> None:
    """Record what was checked; a read-only cache only costs a re-check next time."""
    stat = target.stat()
    note = {
        "file": target.name,
        "sha256": sha256,
        "md5": md5,
        "md5_source": "MedMNIST medmnist/info.py (official)",
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    path = _note_path(target)
    try:
        atomic_write_bytes(path, json.dumps(note, indent=2).encode())
    except OSError as exc:
        log.warning("cannot write %s (%s); the file will be hashed again next time", path, exc)
