"""Pretrained weights, checked before the first trial: which files a space needs, and whether
this machine has them or can download them.

Keras caches each ``keras.applications`` no-top ImageNet file in ``$KERAS_HOME/models`` and
downloads it on first use; ``--weights-dir`` names a folder of such files for offline machines.
A study whose backbones need a file that is in neither place, on a machine that cannot reach
Keras' download host, is refused before anything is written instead of failing trial after trial.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from search.cli import UsageError
from spaces.base import Space
from trainer.config import BACKBONES, BackboneInfo, keras_cache_dir

log = logging.getLogger(__name__)

# Where keras.applications downloads its weight files from.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class MissingWeights:
    """The backbones whose ImageNet files are on neither path Keras and we look in."""

    backbones: tuple[BackboneInfo, ...]
    looked_in: tuple[Path, ...]

    def message(self, host: str, *, resuming: bool) -> str:
        files = ", ".join(f"{b.weights_file} ({b.name})" for b in self.backbones)
        where = " and ".join(str(p) for p in self.looked_in)
        scratch = (
            "or train from scratch in a new study: --name NEW --weights none"
            if resuming
            else "or train from scratch with --weights none"
        )
        return (
            f"ImageNet weights are missing and cannot be downloaded ({host} is unreachable): "
            f"{files}; looked in {where}. Download the files on a machine with internet access "
            "and put them in a folder passed as --weights-dir DIR (or in "
            f"{keras_cache_dir()}), {scratch}"
        )


def needed(space: Space, weights: str) -> list[BackboneInfo]:
    """The space's backbones that would load Keras' ImageNet file under ``--weights``."""
    if weights != "imagenet":
        return []
    return [BACKBONES[b] for b in space.backbones if BACKBONES[b].weights_file]


def find_missing(space: Space, weights: str, weights_dir: str | None) -> MissingWeights | None:
    """The needed files found in neither the Keras cache nor ``weights_dir``; None if all are."""
    folders = [keras_cache_dir()] + ([Path(weights_dir)] if weights_dir else [])
    missing = tuple(
        b
        for b in needed(space, weights)
        if not any((f / b.weights_file).is_file() for f in folders)
    )
    return MissingWeights(missing, tuple(folders)) if missing else None


def download_host() -> tuple[str, int]:
    """Where a download would connect first: the HTTPS proxy when one is configured (Keras
    downloads through urllib, which honours it), else Keras' host.
    ``SEARCH_WEIGHTS_HOST=host:port`` overrides both."""
    override = os.environ.get("SEARCH_WEIGHTS_HOST")
    if override:
        host, _, port = override.rpartition(":")
        return host, int(port)
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(DOWNLOAD_HOST[0]):
        parsed = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
        if parsed.hostname:
            return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    return DOWNLOAD_HOST


def reachable(host: tuple[str, int], seconds: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``host`` opens within ``seconds`` (name lookup included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(host, timeout=seconds):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(result and result[0])


def check_weights(space: Space, weights: str, weights_dir: str | None, *, resuming: bool) -> None:
    """Refuse a study whose ImageNet files are missing here and cannot be downloaded."""
    missing = find_missing(space, weights, weights_dir)
    if missing is None:
        return
    host = download_host()
    if not reachable(host):
        raise UsageError(missing.message(f"{host[0]}:{host[1]}", resuming=resuming))
    log.info(
        "ImageNet weights for %s will be downloaded by the first trial that needs them",
        ", ".join(b.name for b in missing.backbones),
    )
