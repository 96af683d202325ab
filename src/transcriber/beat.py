"""Beat's scheduler: the rescue and the dispatch run inside the beat process itself.

Sent as messages, they would wait behind the transcriptions every worker is busy
with, and expire: stuck work would not be rescued, nor retries dispatched, exactly
when the service is loaded. Both jobs take milliseconds, so beat runs them itself.
They remain ordinary tasks (``transcriber.cleanup_stuck``, ``transcriber.dispatch_queued``)
that an operator can also send by hand.

Before each of them the scheduler notes its own tick (``maintenance.record_beat_tick``), also
when the job is skipped because another beat ran it: ``doctor`` warns when two beats tick.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

from transcriber import maintenance
from transcriber.db import describe_error

log = logging.getLogger(__name__)

RUN_IN_BEAT = frozenset({"transcriber.cleanup_stuck", "transcriber.dispatch_queued"})


class MaintenanceScheduler(PersistentScheduler):
    """``PersistentScheduler`` that runs the maintenance jobs in-process instead of sending them."""

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        if entry.task not in RUN_IN_BEAT:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        entry = self.reserve(entry) if advance else entry
        self._note_tick()
        try:
            result = self.app.tasks[entry.task].apply(args=entry.args, kwargs=entry.kwargs)
        except Exception:  # one failed run must not stop beat; the next interval tries again
            log.exception("%s failed in beat", entry.task)
            return None
        if result.failed():
            log.error("%s failed in beat: %s", entry.task, result.result)
        else:
            log.info("%s: %s", entry.task, result.result)
        return result

    def _note_tick(self) -> None:
        from transcriber.tables import utcnow
        from transcriber.tasks import maintenance_sessions

        try:
            maintenance.record_beat_tick(
                maintenance_sessions(), host=socket.gethostname(), pid=os.getpid(), now=utcnow()
            )
        except Exception as exc:  # the database is down: the job itself says so in a moment
            log.warning("could not note beat's tick: %s", describe_error(exc))

    def close(self) -> None:
        """At a clean stop (called again on the way out: removing the row twice is harmless)."""
        from transcriber.tasks import maintenance_sessions

        try:
            super().close()
        finally:
            try:
                maintenance.forget_beat(maintenance_sessions(), host=socket.gethostname(), pid=os.getpid())
            except Exception as exc:  # the row goes out of the window by itself
                log.warning("could not remove beat's row from service_runs: %s", describe_error(exc))
