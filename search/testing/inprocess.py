"""Workers as threads of the test process, so the coordinator can be tested in-process.

``InProcessPool`` is a ``WorkerPool`` whose workers run the real worker loop
(``search.engine.worker.serve``) in threads, over the same pipes and messages, with a trainer
that needs no process of its own (``fake``, or a ``module:function``). A thread cannot be
killed: drills that kill or hang a worker need the real pool (the CLI tests).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
from collections.abc import Callable

from search.engine.pool import Worker, WorkerPool
from search.engine.worker import serve

log = logging.getLogger(__name__)


class _Thread:
    """What the pool and the coordinator use of a worker process, for a thread."""

    def __init__(self, target: Callable[..., None], args: tuple) -> None:
        read, self._write = os.pipe()
        # readable (EOF) once the thread has ended, like a process's sentinel
        self.sentinel: int | None = read
        self.exitcode: int | None = None
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, args=(target, args), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[..., None], args: tuple) -> None:
        try:
            target(*args)
            self.exitcode = 0
        except (EOFError, OSError):
            self.exitcode = 0  # the pool closed its end of the pipe: shut down
        except BaseException:
            log.exception("in-process worker crashed")
            self.exitcode = 1
        finally:
            os.close(self._write)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if not self._thread.is_alive() and self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def kill(self) -> None:
        raise NotImplementedError("an in-process worker cannot be killed; use the real pool")


class InProcessPool(WorkerPool):
    """A ``WorkerPool`` of threads: same protocol, same worker loop, no processes."""

    def _spawn(self, index: int, env: dict[str, str]) -> Worker:
        parent, child = mp.Pipe()
        thread = _Thread(serve, (child, index, env, self.data_path, self.trainer))
        return Worker(index, env, thread, parent, pid=thread.pid)
