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
from kombu.exceptions import OperationalError as KombuOperationalError

from transcriber.redact import redact_text

log = logging.getLogger(__name__)


def live_task_ids(app: Celery, queues: Iterable[str]) -> set[str] | None:
    """Task ids waiting in ``queues`` or reserved by a worker; ``None`` if unknown (the broker is down).

    Only the broker being unreachable is ``None``; anything else (kombu's Redis channel no longer
    having the attributes read below, say) is raised, so beat's log shows it instead of dispatch
    quietly falling back to never-sent recordings only.
    """
    with app.connection_for_read() as conn:
        # The transport's own connection and channel errors (redis-py's for Redis) and kombu's wrapper
        # of them that ensure_connection raises; OSError for the folder broker's files.
        down = (KombuOperationalError, OSError, *conn.connection_errors, *conn.channel_errors)
        try:
            conn.ensure_connection(max_retries=1)
            channel = conn.default_channel
            if conn.transport.driver_type == "redis":
                return _redis_ids(channel, list(queues))
            if conn.transport.driver_type == "filesystem":
                return _folder_ids(Path(channel.data_folder_in), list(queues))
        except down as exc:  # dispatch falls back to never-sent only
            log.warning("could not inspect the broker: %s: %s", type(exc).__name__, redact_text(str(exc)))
            return None
    return None


def _redis_ids(channel: Any, queues: list[str]) -> set[str]:
    # kombu's Redis channel internals (kombu/transport/redis.py, tested with kombu 5.7; pyproject pins the
    # minor version): the list key of each priority of a queue, and the hash of delivered, unacked messages.
    # tests/integration/test_ops_broker.py fails if kombu renames them.
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
