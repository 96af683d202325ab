"""Beat's scheduler: the rescue and the dispatch run inside the beat process itself.

Sent as messages, they would wait behind the transcriptions every worker is busy
with, and expire: stuck work would not be rescued, nor retries dispatched, exactly
when the service is loaded. Both jobs take milliseconds, so beat runs them itself.
They remain ordinary tasks (``transcriber.cleanup_stuck``, ``transcriber.dispatch_queued``)
that an operator can also send by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

log = logging.getLogger(__name__)

RUN_IN_BEAT = frozenset({"transcriber.cleanup_stuck", "transcriber.dispatch_queued"})


class MaintenanceScheduler(PersistentScheduler):
    """``PersistentScheduler`` that runs the maintenance jobs in-process instead of sending them."""

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        if entry.task not in RUN_IN_BEAT:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        entry = self.reserve(entry) if advance else entry
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
