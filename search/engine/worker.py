"""A long-lived worker process: loads the data once, then trains the trials it is sent.

Protocol (JSON, see ``search/engine/protocol.py``):
  worker -> coordinator: ready, cost (with a cost objective, before the first epoch), epoch
  (waits for a decision), fold (waits), done, failed
  coordinator -> worker: run, decision, shutdown
The worker dies with its coordinator (Linux parent-death signal, and EOF on the pipe), and
ignores Ctrl-C so the coordinator decides how trials end.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from search.engine.protocol import recv, send

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def write_worker_data(data, folds) -> tuple[str, str]:
    """The workers' copy of the data (uint8, uncompressed) and the folds, in a private
    temporary folder: (folder, file). ``load_worker_data`` reads it back."""
    import numpy as np

    from search.cli import UsageError
    from trainer.folds import encode_folds

    try:
        workdir = tempfile.mkdtemp(prefix="search-data-")
    except OSError as exc:
        raise UsageError(
            f"cannot create a temporary folder ({exc}); set TMPDIR to a writable folder with space"
        ) from exc
    data_path = os.path.join(workdir, "data.npz")
    try:
        np.savez(
            data_path,
            images=data.images,
            labels=data.labels,
            class_names=np.array(data.class_names),
            fold_of=np.array(encode_folds(folds, len(data))),
        )
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise UsageError(
            f"cannot write the workers' data file in {workdir} ({exc}); set TMPDIR "
            "to a writable folder with space"
        ) from exc
    return workdir, data_path


def load_worker_data(data_path: str):
    """The data and folds ``write_worker_data`` wrote."""
    import numpy as np

    from trainer.folds import decode_folds
    from trainer.records import Dataset

    with np.load(data_path, allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
        names = tuple(str(n) for n in npz["class_names"])
        fold_of = str(npz["fold_of"])
    return Dataset(images, labels, names), decode_folds(fold_of)


def worker_main(
    conn: Connection,
    worker_id: int,
    env: dict[str, str],
    data_path: str,
    trainer: str,
    log_level: int,
) -> None:
    """Entry point of the spawned process."""
    from search.cli import quiet_frameworks

    os.environ.update(env)  # before TensorFlow is imported: pins CUDA_VISIBLE_DEVICES
    # The coordinator's -v (DEBUG) shows the frameworks' start-up lines; otherwise they stay out.
    quiet_frameworks(verbose=log_level <= logging.DEBUG)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"worker {worker_id}: %(message)s")
    try:
        serve(conn, worker_id, env, data_path, trainer)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the coordinator is gone: so are we
    finally:
        conn.close()


def _device(env: dict[str, str]) -> str:
    visible = env.get("CUDA_VISIBLE_DEVICES")
    return f"GPU:{visible}" if visible not in (None, "", "-1") else "CPU"


def serve(conn: Connection, worker_id: int, env: dict[str, str], data_path: str, trainer: str):
    """The worker's message loop: load the data, say ready, train each trial it is sent."""
    from search.engine.plugins import resolve_trainer

    if trainer != "fake":  # before Keras is imported: the backend's GPU memory policy
        from search.engine.devices import configure_backend

        configure_backend()
    train_trial = resolve_trainer(trainer)
    data, folds = load_worker_data(data_path)
    # Everything imported so far (TensorFlow: millions of objects) lives as long as the worker;
    # frozen, each trial's clear_session() no longer scans it (docs/constants.md).
    gc.freeze()
    send(
        conn,
        {
            "type": "ready",
            "worker": worker_id,
            "pid": os.getpid(),
            "device": _device(env),
            "host": socket.gethostname(),
        },
    )
    while True:
        message = recv(conn)
        if message["type"] == "shutdown":
            return
        if message["type"] == "run":
            send(conn, _run_trial(conn, message, train_trial, data, folds))
            sys.stdout.flush()


class _Channel:
    """A trial's questions to the coordinator (after each epoch and fold), and the seconds spent
    waiting for its answers (the benchmarks read them)."""

    def __init__(self, conn: Connection, number: int) -> None:
        self.conn, self.number, self.waited = conn, number, 0.0

    def ask(self, payload: dict[str, Any]) -> Any:
        from trainer.config import Decision

        start = time.perf_counter()
        send(self.conn, payload)
        reply = recv(self.conn)
        self.waited += time.perf_counter() - start
        return Decision(reply.get("decision", "continue"))

    def report(self, fold: int, epoch: int, metrics: Any) -> Any:
        return self.ask(
            {
                "type": "epoch",
                "trial": self.number,
                "fold": fold,
                "epoch": epoch,
                "metrics": metrics.as_dict(),
            }
        )

    def on_fold(self, result: Any) -> Any:
        return self.ask({"type": "fold", "trial": self.number, "result": result.to_dict()})

    def cost(self, name: str) -> Any:
        """The ``after_build`` hook that sends the built model's cost ``name`` (no answer)."""

        def send_cost(measure: Any) -> None:
            value = float(measure(name))
            send(self.conn, {"type": "cost", "trial": self.number, "cost": name, "value": value})

        return send_cost


def _run_trial(
    conn: Connection, message: dict[str, Any], train_trial: Any, data: Any, folds: Any
) -> dict[str, Any]:
    """Train the trial ``message`` names; the message that says how it ended."""
    from search.testing.faults import hook_for
    from trainer.config import TrialConfig
    from trainer.errors import TrialFailed
    from trainer.hooks import TrainHooks
    from trainer.records import FoldResult

    number = message["trial"]
    channel = _Channel(conn, number)
    try:
        config = TrialConfig.from_dict(message["config"])
        completed = [FoldResult.from_dict(f) for f in message.get("completed", [])]
        drill = hook_for(number)
        cost = message.get("cost")
        result = train_trial(
            config,
            data,
            folds,
            channel.report,
            monitor=message["monitor"],
            on_fold=channel.on_fold,
            completed=completed,
            hooks=TrainHooks(
                before_epoch=[drill] if drill else [],
                after_build=[channel.cost(cost)] if cost else [],
            ),
        )
        if result.timings:
            result.timings["coordinator_wait"] = channel.waited
        return {"type": "done", "trial": number, "result": result.to_dict()}
    except TrialFailed as exc:
        return {"type": "failed", "trial": number, "kind": exc.kind, "reason": str(exc)}
    except (EOFError, BrokenPipeError, ConnectionResetError):
        raise
    except Exception as exc:  # an unexpected bug: fail this trial, keep the worker
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        log.error("trial %s crashed: %s", number, tail)
        return {
            "type": "failed",
            "trial": number,
            "kind": "error",
            "reason": f"{type(exc).__name__}: {exc} | {tail[-800:]}",
        }
