"""What the broker holds: the task ids of transcription messages not yet finished.

``dispatch_queued`` resends a queued recording only when its last task id is not
among these, so a message lost with a Redis restart or ``FLUSHDB`` is replaced,
while one that is merely waiting behind a backlog is not duplicated.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)


def live_task_ids(app: Celery, queues: Iterable[str]) -> set[str] | None:
    """Task ids waiting in ``queues`` or reserved by a worker; ``None`` if unknown."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.default_channel
            if conn.transport.driver_type == "redis":
                return _redis_ids(channel, list(queues))
            if conn.transport.driver_type == "filesystem":
                return _folder_ids(Path(channel.data_folder_in), list(queues))
    except Exception as exc:  # the broker is down: dispatch falls back to never-sent only
        log.warning("could not inspect the broker: %s", type(exc).__name__)
        return None
    return None


def _redis_ids(channel: Any, queues: list[str]) -> set[str]:
    client = channel.client
    ids: set[str] = set()
    keys = {channel._q_for_pri(queue, pri) for queue in queues for pri in channel.priority_steps}
    for key in keys:
        for raw in client.lrange(key, 0, -1):
            ids.update(_ids_in(raw))
    for raw in client.hvals(channel.unacked_key):
        try:
            message = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError):
            continue
        ids.update(_ids_in(json.dumps(message)))
    return ids


def _folder_ids(folder: Path, queues: list[str]) -> set[str]:
    """Kombu's folder broker keeps one ``<time>_<uuid>.<queue>.msg`` file per waiting message."""
    ids: set[str] = set()
    suffixes = tuple(f".{queue}.msg" for queue in queues)
    for path in folder.glob("*.msg"):
        if path.name.endswith(suffixes):
            try:
                ids.update(_ids_in(path.read_bytes()))
            except OSError:  # consumed meanwhile
                continue
    return ids


def _ids_in(raw: bytes | str) -> Iterable[str]:
    try:
        message = json.loads(raw)
    except ValueError:
        return ()
    headers = message.get("headers") or {}
    if "id" in headers:  # protocol 2
        return (str(headers["id"]),)
    try:  # protocol 1: the id is in the body
        body = json.loads(base64.b64decode(message["body"]))
        return (str(body["id"]),)
    except (KeyError, ValueError, TypeError):
        return ()
