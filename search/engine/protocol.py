"""Messages between the coordinator and its workers: JSON objects over a multiprocessing pipe.

Only plain JSON crosses the boundary (never Keras or Optuna objects), so a worker could as well
be another program. Each message is a dict with a ``type``; see ``search/engine/worker.py``.
"""

from __future__ import annotations

import json
from multiprocessing.connection import Connection
from typing import Any


def send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message, allow_nan=True).encode())


def recv(conn: Connection) -> dict[str, Any]:
    message = json.loads(conn.recv_bytes().decode())
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError(f"malformed message from peer: {message!r:.200}")
    return message
