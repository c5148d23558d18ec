"""Fault drills: ``SEARCH_FAULTS`` makes a worker misbehave on chosen trials, for tests and docs.

Format: comma-separated ``KIND@TRIAL[:FOLD]``, e.g. ``oom@3,nan@5:1,hang@7,exit@9``. At the first
epoch of the fold (default 0) of trial number TRIAL the worker:
  oom   raises TensorFlow's out-of-memory error inside training (-> OutOfMemory)
  nan   raises NonFiniteLoss, as a diverging loss would
  hang  sleeps forever (the coordinator's --trial-timeout must end it)
  exit  kills its own process with SIGKILL, as the kernel's OOM killer would
Drills run only when armed as well (``SEARCH_FAULTS_ARMED=1``), so a value left behind in a
shell cannot hurt a real study; ``search.run`` says at start-up whether a drill is armed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FAULT_KINDS = ("oom", "nan", "hang", "exit")
FAULTS_ENV = "SEARCH_FAULTS"
ARMED_ENV = "SEARCH_FAULTS_ARMED"


def drills_armed(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """Whether ``SEARCH_FAULTS_ARMED=1`` allows the drills in ``SEARCH_FAULTS`` to run."""
    return (environ if environ is not None else os.environ).get(ARMED_ENV, "") == "1"


def parse(spec: str) -> dict[int, tuple[str, int]]:
    """``"oom@3,nan@5:1"`` -> {3: ("oom", 0), 5: ("nan", 1)}; raises ValueError on bad input."""
    out: dict[int, tuple[str, int]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, where = item.partition("@")
        trial, _, fold = where.partition(":")
        if kind not in FAULT_KINDS or not trial.isdigit() or (fold and not fold.isdigit()):
            raise ValueError(
                f"bad SEARCH_FAULTS item {item!r}; use KIND@TRIAL[:FOLD], KIND in "
                f"{', '.join(FAULT_KINDS)}"
            )
        out[int(trial)] = (kind, int(fold or 0))
    return out


def hook_for(
    trial: int, environ: dict[str, str] | None = None
) -> Callable[[int, int], None] | None:
    """A ``before_epoch(fold, epoch)`` hook that injects this trial's fault, if one is set."""
    env = environ if environ is not None else os.environ
    if not drills_armed(env):
        return None
    faults = parse(env.get(FAULTS_ENV, ""))
    if trial not in faults:
        return None
    kind, at_fold = faults[trial]

    def inject(fold: int, epoch: int) -> None:
        if fold != at_fold or epoch != 0:
            return
        if kind == "oom":
            if "keras" not in sys.modules:  # the fake trainer: no backend to raise from
                from trainer.errors import OutOfMemory

                raise OutOfMemory("OOM when allocating (drill)")
            from trainer.backend import out_of_memory_error

            raise out_of_memory_error("OOM when allocating (drill)")  # the backend's own error
        if kind == "nan":
            from trainer.errors import NonFiniteLoss

            raise NonFiniteLoss(f"training loss became nan in fold {fold}, epoch {epoch} (drill)")
        if kind == "hang":
            while True:
                time.sleep(3600)
        os.kill(os.getpid(), signal.SIGKILL)

    return inject


def check_drills(*, trial_timeout: float | None) -> None:
    """``SEARCH_FAULTS`` hurts trials on purpose: honoured only when armed, and said loudly."""
    from search.cli import UsageError

    spec = os.environ.get(FAULTS_ENV, "").strip()
    if not spec:
        return
    if not drills_armed():
        log.warning(
            "warning: %s=%r is set in the environment but not armed (%s=1), so it is ignored: "
            "no trial is failed on purpose. Unset it to silence this warning",
            FAULTS_ENV,
            spec,
            ARMED_ENV,
        )
        del os.environ[FAULTS_ENV]  # the workers inherit this environment
        return
    try:
        faults = parse(spec)
    except ValueError as exc:
        raise UsageError(f"{FAULTS_ENV}: {exc}") from None
    if trial_timeout is None and any(kind == "hang" for kind, _ in faults.values()):
        raise UsageError(
            f"{FAULTS_ENV}={spec!r} makes a trial hang forever; add --trial-timeout SECONDS "
            "so the drill can end"
        )
    log.warning(
        "warning: fault drill armed (%s=%r): %s %s will fail on purpose; unset %s and %s "
        "for a real study",
        FAULTS_ENV,
        spec,
        "trial" if len(faults) == 1 else "trials",
        ", ".join(str(n) for n in sorted(faults)),
        FAULTS_ENV,
        ARMED_ENV,
    )
