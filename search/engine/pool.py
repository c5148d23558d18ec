"""The worker processes: spawned, watched, messaged, replaced and shut down.

The pool knows processes and pipes, not trials: the coordinator attaches the running trial to a
``Worker`` and decides what a death means for it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from search.engine.protocol import recv, send
from search.engine.worker import worker_main

log = logging.getLogger(__name__)


@dataclass
class Worker:
    index: int
    env: dict[str, str]
    process: Any
    conn: Connection
    device: str = "?"
    pid: int = 0
    ready: bool = False
    trial: Any = None  # the coordinator's running trial, if any


class WorkerPool:
    """One long-lived process per worker environment (each pinned to its device by ``env``)."""

    def __init__(self, envs: list[dict[str, str]], data_path: str, trainer: str) -> None:
        self.envs = envs
        self.data_path = data_path
        self.trainer = trainer
        self.workers: list[Worker] = []
        self._ctx = mp.get_context("spawn")

    def start(self) -> None:
        self.workers = [self._spawn(i, env) for i, env in enumerate(self.envs)]

    def _spawn(self, index: int, env: dict[str, str]) -> Worker:
        """Start worker ``index``'s process (``search.testing.inprocess`` starts a thread)."""
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(
                child,
                index,
                env,
                self.data_path,
                self.trainer,
                logging.getLogger().getEffectiveLevel(),
            ),
            name=f"search-worker-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        log.debug("started worker %d (pid %s, %s)", index, process.pid, env)
        return Worker(index, env, process, parent, pid=process.pid or 0)

    def replace(self, worker: Worker) -> str | None:
        """Reap a dead (or killed) worker and start its successor; how it died, or None if it
        was already replaced."""
        if worker not in self.workers:
            return None
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        how = (
            f"signal {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exit code {code}"
        )
        self.workers.remove(worker)
        worker.conn.close()
        self.workers.append(self._spawn(worker.index, worker.env))
        return how

    def send(self, worker: Worker, message: dict[str, Any]) -> bool:
        """Send a message; False when the worker's pipe is gone (it died)."""
        try:
            send(worker.conn, message)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def wait(self, timeout: float) -> list[tuple[Worker, dict[str, Any] | None]]:
        """Messages that arrived within ``timeout``; ``None`` for a worker that died."""
        by_conn = {w.conn: w for w in self.workers}
        by_sentinel = {w.process.sentinel: w for w in self.workers}
        events: list[tuple[Worker, dict[str, Any] | None]] = []
        for ready in wait(list(by_conn) + list(by_sentinel), timeout=timeout):
            if ready in by_conn:
                worker = by_conn[ready]
                try:
                    events.append((worker, recv(worker.conn)))
                except (EOFError, OSError):
                    events.append((worker, None))
            elif ready in by_sentinel:
                events.append((by_sentinel[ready], None))
        return events

    def shutdown(self) -> None:
        for w in self.workers:
            try:
                send(w.conn, {"type": "shutdown"})
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()
