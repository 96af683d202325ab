"""The watched folder: find media files, wait until they settle, register each once.

Events (watchdog) only make a rescan come sooner; the periodic rescan is what finds
files, because network shares often deliver no events. A file is taken once its
size and mtime have not changed for ``WATCH_SETTLE_SECONDS``; a file already known
by (path, size, mtime) is never hashed again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle
from transcriber.audio import in_use, is_media_file, probe_duration, sha256_of, unread_key
from transcriber.db import describe_error, transaction
from transcriber.tables import Recording, utcnow

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", ".filepart")


@dataclass(frozen=True)
class Observation:
    size: int
    mtime_ns: int


def ignore_reason(name: str) -> str | None:
    """Why a file name is not taken, or ``None`` if it is a candidate."""
    lower = name.lower()
    if name.startswith(".") or name.startswith("~$"):
        return "hidden or temporary file"
    if lower.endswith(TEMP_SUFFIXES):
        return "file still being copied or downloaded"
    if not is_media_file(name):
        return "not an audio or video file"
    return None


def has_settled(first_seen_unchanged: float, now: float, settle_seconds: float) -> bool:
    """A file is settled when it has looked the same for ``settle_seconds``."""
    return now - first_seen_unchanged >= settle_seconds


def walk_files(root: Path) -> Iterator[os.DirEntry[str]]:
    """Every regular file below ``root``; symlinks are not followed (files are read only under root)."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_symlink():
                            yield entry  # reported and skipped by the caller
                        elif entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError as exc:
            log.warning("cannot read folder %s: %s", folder, exc)


@dataclass(frozen=True)
class ReadyFile:
    path: str
    observation: Observation


SendTask = Callable[[uuid.UUID, str, str], None]  # recording id, task id, file name


class Ingester:
    """Registers settled files of ``watch_dir`` as queued recordings, and sends their messages."""

    batch_size = 200  # files per transaction: 10,000 files register in seconds, not minutes

    def __init__(
        self,
        sessions: sessionmaker[Session],
        watch_dir: Path,
        *,
        settle_seconds: float,
        send: SendTask,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.watch_dir = watch_dir
        self.settle_seconds = settle_seconds
        self.send = send
        self.clock = clock
        self.known: dict[str, Observation] = {}
        self.pending: dict[str, tuple[Observation, float]] = {}
        self.ignored: set[str] = set()
        self.unreadable_since: dict[str, float] = {}
        self.unreadable_grace = max(4 * settle_seconds, 1.0)
        with sessions() as session:  # registered before this process started: not hashed again
            rows = session.execute(
                select(Recording.file_path, Recording.file_size, Recording.file_mtime_ns).order_by(Recording.created_at)
            ).all()
        self._registered = {path: (size, mtime) for path, size, mtime in rows}  # the newest per path wins

    def scan(self) -> int:
        """One pass over the folder; returns how many new recordings were registered."""
        ready = self._find_settled()
        return sum(self._register(ready[i : i + self.batch_size]) for i in range(0, len(ready), self.batch_size))

    def scan_until_settled(self) -> int:
        """Scan, and once more after the settle time for files still moving (``watch --once``)."""
        count = self.scan()
        if self.pending:
            time.sleep(self.settle_seconds)
            count += self.scan()
        return count

    def _find_settled(self) -> list[ReadyFile]:
        now = self.clock()
        seen: set[str] = set()
        ready: list[ReadyFile] = []
        for entry in walk_files(self.watch_dir):
            path = entry.path
            seen.add(path)
            if entry.is_symlink():
                self._ignore_once(path, "symbolic link (not followed: files are read only under WATCH_DIR)")
                continue
            reason = ignore_reason(entry.name)
            if reason:
                self._ignore_once(path, reason)
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            current = Observation(stat.st_size, stat.st_mtime_ns)
            if self.known.get(path) == current:
                continue
            if path not in self.known and self._was_registered(path, current):
                self.known[path] = current
                continue
            previous = self.pending.get(path)
            if previous is None or previous[0] != current:
                self.pending[path] = previous = (current, now)
            if has_settled(previous[1], now, self.settle_seconds):
                ready.append(ReadyFile(path, current))
        for gone in set(self.pending) - seen:
            del self.pending[gone]
        return ready

    def _unreadable(self, item: ReadyFile, exc: OSError) -> str | None:
        """A file that stays unreadable is registered all the same (keyed by path, size and mtime).

        A missing permission lasts until someone fixes it (a Windows lock is waited for before this).
        Registered, the recording shows the cause in the database instead of being skipped in silence.
        """
        now = self.clock()
        first = self.unreadable_since.get(item.path)
        if first is None:
            self.unreadable_since[item.path] = now
            log.info("cannot read %s yet (%s); trying again for %.0fs", item.path, exc.strerror or exc,
                     self.unreadable_grace)  # fmt: skip
            return None
        if now - first < self.unreadable_grace:
            return None
        log.warning("cannot read %s (%s): registering it so the cause is on record", item.path, exc.strerror or exc)
        self.unreadable_since.pop(item.path, None)
        return unread_key(item.path, item.observation.size, item.observation.mtime_ns)

    def _was_registered(self, path: str, current: Observation) -> bool:
        """Registered before this process started, and not changed since (rows before 0002 lack the mtime)."""
        size, mtime = self._registered.get(os.path.abspath(path), (None, None))
        return size == current.size and mtime in (None, current.mtime_ns)

    def _ignore_once(self, path: str, reason: str) -> None:
        if path not in self.ignored:
            self.ignored.add(path)
            log.info("ignoring %s: %s", path, reason)

    def _register(self, batch: list[ReadyFile]) -> int:
        hashed: list[tuple[ReadyFile, str]] = []
        for item in batch:
            try:
                hashed.append((item, sha256_of(item.path)))
                self.unreadable_since.pop(item.path, None)
            except PermissionError as exc:
                if in_use(exc):  # a copier on Windows may hold a full-size file for minutes: wait for it
                    if item.path not in self.ignored:
                        self.ignored.add(item.path)
                        log.info("%s is in use by another program; waiting until it is let go", item.path)
                    continue
                key = self._unreadable(item, exc)  # no read permission: registered after a grace
                if key:
                    hashed.append((item, key))
            except OSError as exc:  # gone, or a share that went away: try again next scan
                log.info("not readable yet, will retry: %s (%s)", item.path, exc.strerror or exc)
        files = [
            lifecycle.NewFile(os.path.abspath(item.path), os.path.basename(item.path), item.observation.size, digest,
                              str(uuid.uuid4()), probe_duration(item.path), item.observation.mtime_ns)
            for item, digest in hashed
        ]  # fmt: skip
        with transaction(self.sessions) as session:
            results = lifecycle.register_files(session, files, now=utcnow())
        created = []
        for new, recording, is_new in results:
            if is_new:
                created.append((recording.id, new.task_id, recording.file_name))
                log.info("registered %s as recording %s", new.file_path, recording.id)
            else:
                log.info("duplicate: %s has the same audio as recording %s (%s)",
                         new.file_path, recording.id, recording.file_path)  # fmt: skip
        for item, _ in hashed:
            self.known[item.path] = item.observation
            self.pending.pop(item.path, None)
        for recording_id, task_id, file_name in created:  # committed first, then sent
            try:
                self.send(recording_id, task_id, file_name)
            except Exception as exc:  # the broker is down: the recording is safe in the database
                log.warning(
                    "could not send recording %s to the broker (%s); beat's dispatch sends it once the broker is back",
                    recording_id, type(exc).__name__,
                )  # fmt: skip
        return len(created)


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on Ctrl-C, a service stop (SIGTERM) or Ctrl-Break on Windows."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop.set())


def run_watch_loop(ingester: Ingester, *, poll_seconds: float, stop: threading.Event, use_events: bool = True) -> None:
    """Scan at start, soon after file events, and every ``poll_seconds``, until ``stop`` is set."""
    wake = threading.Event()
    observer = _start_observer(ingester.watch_dir, wake) if use_events else None
    try:
        while not stop.is_set():
            try:
                ingester.scan()
            except OperationalError as exc:  # the database restarts: what was not committed is found again
                log.warning("database unavailable during a scan (%s); trying again", describe_error(exc))
                stop.wait(min(poll_seconds, 5.0))
                continue
            # While files are settling look again soon; otherwise wait for an event or the next poll.
            deadline = time.monotonic() + (min(1.0, poll_seconds) if ingester.pending else poll_seconds)
            while not stop.is_set() and not wake.is_set() and time.monotonic() < deadline:
                stop.wait(0.2)
            if wake.is_set():
                wake.clear()
                stop.wait(0.2)  # let a burst of events (a copy in progress) pass
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)


def _start_observer(root: Path, wake: threading.Event):  # type: ignore[no-untyped-def]
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event):  # type: ignore[no-untyped-def]
            wake.set()

    observer = Observer()
    try:
        observer.schedule(_Wake(), str(root), recursive=True)
        observer.start()
    except OSError as exc:  # e.g. too many inotify watches, or a share without events
        log.warning("file events unavailable for %s (%s); polling only", root, exc)
        return None
    return observer
