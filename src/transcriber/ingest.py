"""The watched folder: find media files, wait until they settle, register each once.

Events (watchdog) make a rescan come sooner; the periodic rescan is what finds
files, because network shares often deliver no events. A file is taken once its
size and mtime have not changed for ``WATCH_SETTLE_SECONDS`` (longer for a path that
changed after it was registered: it is written in bursts); a file already known by
(path, size, mtime) is never hashed again. A file the platform reports complete is taken
at the next scan, without the settle wait: renamed or moved into the folder (every
platform's events), or closed after writing (Linux's inotify), as long as it still looks
as it did then and its path never changed after a registration.

Any name the file system holds is taken: one that is not UTF-8 (Latin-1 names on SMB
shares) or holds control characters is recorded under a readable form, with its exact
bytes kept for the worker (``real_path``). Whatever goes wrong with one file costs
that file only, with one logged reason; it never stops the scan.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from transcriber import callfacts, lifecycle
from transcriber.audio import in_use, is_media_file, probe_duration, sha256_of, unread_key
from transcriber.db import describe_error, transaction
from transcriber.lifecycle import NewFile, Registered
from transcriber.names import printable, readable_path, real_path
from transcriber.tables import Recording, utcnow

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", ".filepart")

# A path that changed after it was registered waits twice as long each time, up to this.
SETTLE_CAP_SECONDS = 600.0


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


def settle_time(base: float, changes: int, cap: float = SETTLE_CAP_SECONDS) -> float:
    """How long a path must look the same: ``base``, doubled for each time it changed after it was
    registered (a file written in bursts, with pauses longer than ``base``), up to ``cap`` (never below ``base``)."""
    return min(base * 2.0 ** min(changes, 64), max(base, cap))


# ---------------------------------------------------------------- the folder


def _log_unreadable_folder(folder: str, exc: OSError) -> None:
    log.warning("cannot read folder %s: %s", printable(folder), exc.strerror or exc)


def walk_files(
    root: Path, on_error: Callable[[str, OSError], None] = _log_unreadable_folder
) -> Iterator[os.DirEntry[str]]:
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
            on_error(folder, exc)


@dataclass(frozen=True)
class ReadyFile:
    path: str
    observation: Observation


SendTask = Callable[[uuid.UUID, str, str], None]  # recording id, task id, file name
ReadFacts = Callable[[str], callfacts.CallFacts]  # file name -> the call's facts (FILENAME_PATTERN & co. bound)


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
        settle_cap_seconds: float = SETTLE_CAP_SECONDS,
        read_facts: ReadFacts = callfacts.parse,
        trust_close: bool = True,
    ) -> None:
        self.sessions = sessions
        self.watch_dir = watch_dir
        self.settle_seconds = settle_seconds
        self.settle_cap_seconds = settle_cap_seconds
        self.send = send
        self.clock = clock
        self.read_facts = read_facts
        self.trust_close = trust_close  # WATCH_TRUST_CLOSE: a closed file is complete (else only renames are)
        self.known: dict[str, Observation] = {}  # registered (or found registered) as it looks now
        self.pending: dict[str, tuple[Observation, float]] = {}  # settling: how it looks, since when
        self.ignored: set[str] = set()
        self.refused: dict[str, Observation | None] = {}  # left out with a logged reason, until it changes
        self.unreadable_since: dict[str, float] = {}
        self.unreadable_grace = max(4 * settle_seconds, 1.0)
        self.unreadable_folders: dict[str, str] = {}
        self.changes: dict[str, int] = {}  # times a path changed after it was registered
        # Reported complete by a file event (closed after writing, renamed or moved in), as it looked then.
        self.complete: dict[str, Observation] = {}
        self.recording_for: dict[str, uuid.UUID] = {}  # absolute path -> the recording it registered last
        self.shared: set[uuid.UUID] = set()  # recordings another file duplicated: never given new content
        with sessions() as session:  # registered before this process started: not hashed again
            rows = session.execute(
                select(
                    Recording.id, Recording.file_path, Recording.file_path_bytes, Recording.file_size,
                    Recording.file_mtime_ns,
                ).order_by(Recording.created_at)
            ).all()  # fmt: skip
        self._registered: dict[str, tuple[int, int | None]] = {}
        for recording_id, stored, raw, size, mtime in rows:  # the newest per path wins
            path = real_path(stored, raw)
            self._registered[path] = (size, mtime)
            self.recording_for[path] = recording_id

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

    def arrived_complete(self, path: str, *, closed: bool = False) -> None:
        """A file event says ``path`` was renamed or moved in whole, or (``closed``) closed after writing (any thread).

        The next scan takes it at once if it still looks as it did now; otherwise it settles as usual. A close
        counts only with ``trust_close``: a recorder that closes and reopens its file while recording needs it off.
        """
        if closed and not self.trust_close:
            return
        try:
            stat = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        self.complete[os.path.normpath(path)] = Observation(stat.st_size, stat.st_mtime_ns)

    def settle_for(self, path: str) -> float:
        return settle_time(self.settle_seconds, self.changes.get(path, 0), self.settle_cap_seconds)

    def _find_settled(self) -> list[ReadyFile]:
        now = self.clock()
        reported_before = set(self.complete)  # an event during the walk is for the next scan: kept
        seen: set[str] = set()
        ready: list[ReadyFile] = []
        failing: dict[str, str] = {}

        def unreadable_folder(folder: str, exc: OSError) -> None:
            reason = exc.strerror or str(exc)
            if self.unreadable_folders.get(folder) != reason:  # once, not on every scan
                log.warning("cannot read folder %s (%s); its files are left out until it can be read",
                            printable(folder), reason)  # fmt: skip
            failing[folder] = reason

        for entry in walk_files(self.watch_dir, on_error=unreadable_folder):
            seen.add(entry.path)
            try:
                item = self._look_at(entry, now)
            except Exception as exc:  # one file's surprise costs that file only
                self._refuse(entry.path, None, f"unexpected {type(exc).__name__}: {printable(str(exc))}")
                continue
            if item is not None:
                ready.append(item)
        self.unreadable_folders = failing
        for table in (self.pending, self.refused, self.changes):
            for gone in set(table) - seen:
                del table[gone]
        if self.complete:  # reported for a name never taken (a temporary file) or gone: forgotten
            walked = {os.path.normpath(path) for path in seen}
            for gone in reported_before - walked:
                self.complete.pop(gone, None)
        return ready

    def _look_at(self, entry: os.DirEntry[str], now: float) -> ReadyFile | None:
        """The file, once it is ready to register; ``None`` while it settles or if it is not taken."""
        path = entry.path
        if entry.is_symlink():
            self._ignore_once(path, "symbolic link (not followed: files are read only under WATCH_DIR)")
            return None
        reason = ignore_reason(entry.name)
        if reason:
            self._ignore_once(path, reason)
            return None
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # deeper than the system opens: the worker could not read it either
                self._refuse(path, None, f"the path is too long to open ({len(os.fsencode(path))} bytes); "
                                         "move the file to a shorter path")  # fmt: skip
            return None  # otherwise gone meanwhile
        current = Observation(stat.st_size, stat.st_mtime_ns)
        if self.known.get(path) == current or (path in self.refused and self.refused[path] == current):
            return None
        if path not in self.known and self._was_registered(path, current):
            self.known[path] = current
            return None
        reported = self.complete.pop(os.path.normpath(path), None) if self.complete else None
        if reported == current and current.size > 0 and path not in self.known and not self.changes.get(path):
            return ReadyFile(path, current)  # complete, as an event said: no settle wait (one written in bursts waits)
        previous = self.pending.get(path)
        if previous is None or previous[0] != current:
            if previous is None and path in self.known:  # changed after it was registered: written in bursts
                self.changes[path] = self.changes.get(path, 0) + 1
            self.pending[path] = previous = (current, now)
        if has_settled(previous[1], now, self.settle_for(path)):
            return ReadyFile(path, current)
        return None

    def _unreadable(self, item: ReadyFile, exc: OSError) -> str | None:
        """A file that stays unreadable is registered all the same (keyed by path, size and mtime).

        A missing permission lasts until someone fixes it (a Windows lock is waited for before this).
        Registered, the recording shows the cause in the database instead of being skipped in silence.
        """
        now = self.clock()
        first = self.unreadable_since.get(item.path)
        shown = printable(item.path)
        if first is None:
            self.unreadable_since[item.path] = now
            log.info("cannot read %s yet (%s); trying again for %.0fs", shown, exc.strerror or exc,
                     self.unreadable_grace)  # fmt: skip
            return None
        if now - first < self.unreadable_grace:
            return None
        log.warning("cannot read %s (%s): registering it so the cause is on record", shown, exc.strerror or exc)
        self.unreadable_since.pop(item.path, None)
        observed = item.observation
        return unread_key(item.path, observed.size, observed.mtime_ns)  # keyed by the name's bytes

    def _was_registered(self, path: str, current: Observation) -> bool:
        """Registered before this process started, and not changed since (rows before 0002 lack the mtime)."""
        size, mtime = self._registered.get(os.path.abspath(path), (None, None))
        return size == current.size and mtime in (None, current.mtime_ns)

    def _ignore_once(self, path: str, reason: str) -> None:
        if path not in self.ignored:
            self.ignored.add(path)
            log.info("ignoring %s: %s", printable(path), reason)

    def _refuse(self, path: str, observation: Observation | None, reason: str) -> None:
        """Leave one file out, with one logged reason; it is looked at again once it changes."""
        if path not in self.refused or self.refused[path] != observation:
            log.warning("leaving out %s: %s", printable(path), reason)
        self.refused[path] = observation
        self.pending.pop(path, None)

    def _prepare(self, item: ReadyFile) -> NewFile | None:
        """Hash and probe one settled file; ``None`` while it cannot be read yet."""
        try:
            digest = sha256_of(item.path)
            self.unreadable_since.pop(item.path, None)
        except PermissionError as exc:
            if in_use(exc):  # a copier on Windows may hold a full-size file for minutes: wait for it
                if item.path not in self.ignored:
                    self.ignored.add(item.path)
                    log.info("%s is in use by another program; waiting until it is let go", printable(item.path))
                return None
            key = self._unreadable(item, exc)  # no read permission: registered after a grace
            if key is None:
                return None
            digest = key
        except OSError as exc:  # gone, or a share that went away: try again next scan
            log.info("not readable yet, will retry: %s (%s)", printable(item.path), exc.strerror or exc)
            return None
        absolute = os.path.abspath(item.path)
        shown = readable_path(absolute)
        replaces = self.recording_for.get(absolute)
        return NewFile(
            shown, os.path.basename(shown), item.observation.size, digest, str(uuid.uuid4()),
            probe_duration(item.path), item.observation.mtime_ns, None if shown == absolute else os.fsencode(absolute),
            replaces=None if replaces in self.shared else replaces, facts=self.read_facts(os.path.basename(shown)),
        )  # fmt: skip

    def _register(self, batch: list[ReadyFile]) -> int:
        prepared: list[tuple[ReadyFile, NewFile]] = []
        for item in batch:
            try:
                new = self._prepare(item)
            except Exception as exc:  # one file's surprise costs that file only
                self._refuse(item.path, item.observation, f"unexpected {type(exc).__name__}: {printable(str(exc))}")
                continue
            if new is not None:
                prepared.append((item, new))
        created = []
        for item, new, recording, outcome in self._commit(prepared):
            absolute, shown = os.path.abspath(item.path), _shown(item.path, new)
            if outcome is Registered.CREATED:
                assert new.task_id is not None  # the watcher always names the message it sends
                self.recording_for[absolute] = recording.id
                created.append((recording.id, new.task_id, recording.file_name))
                log.info("registered %s as recording %s", shown, recording.id)
            elif outcome is Registered.UPDATED:
                log.info("%s changed before a worker took it: recording %s now holds its new content (%d bytes)",
                         shown, recording.id, new.file_size)  # fmt: skip
            elif recording.id == self.recording_for.get(absolute):
                log.info("%s was touched but holds the same audio as its recording %s", shown, recording.id)
            else:
                self.shared.add(recording.id)
                log.info("duplicate: %s has the same audio as recording %s (%s)",
                         shown, recording.id, recording.file_path)  # fmt: skip
            self.known[item.path] = item.observation
            self.pending.pop(item.path, None)
            self.refused.pop(item.path, None)
        for recording_id, task_id, file_name in created:  # committed first, then sent
            try:
                self.send(recording_id, task_id, file_name)
            except Exception as exc:  # the broker is down: the recording is safe in the database
                log.warning(
                    "could not send recording %s to the broker (%s); beat's dispatch sends it once the broker is back",
                    recording_id, type(exc).__name__,
                )  # fmt: skip
        return len(created)

    def _commit(self, pairs: list[tuple[ReadyFile, NewFile]]) -> list[tuple[ReadyFile, NewFile, Recording, Registered]]:
        """Register a batch in one transaction; if that fails other than by the database being away,
        each file in a transaction of its own, so that a file the database refuses costs only itself."""
        if not pairs:
            return []
        try:
            with transaction(self.sessions) as session:
                results = lifecycle.register_files(session, [new for _, new in pairs], now=utcnow())
        except OperationalError:  # the database is away: the loop waits, the next scan finds these files again
            raise
        except Exception as exc:
            if len(pairs) > 1:
                log.warning("registering %d files together failed (%s); registering them one by one", len(pairs),
                            printable(describe_error(exc)))  # fmt: skip
                return [result for pair in pairs for result in self._commit([pair])]
            item, _ = pairs[0]
            self._refuse(item.path, item.observation, f"the database refused it ({printable(describe_error(exc))})")
            return []
        return [
            (item, new, recording, outcome) for (item, _), (new, recording, outcome) in zip(pairs, results, strict=True)
        ]


def _shown(path: str, new: NewFile) -> str:
    """A file for the log: its readable path, and the exact name too where that differs."""
    if new.file_path_bytes is None:
        return new.file_path
    exact = printable(os.path.abspath(path))
    return new.file_path if exact == new.file_path else f"{exact} (recorded as {new.file_path})"


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on Ctrl-C, a service stop (SIGTERM) or Ctrl-Break on Windows."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop.set())


def run_watch_loop(ingester: Ingester, *, poll_seconds: float, stop: threading.Event, use_events: bool = True) -> None:
    """Scan at start, soon after file events, and every ``poll_seconds``, until ``stop`` is set."""
    wake = threading.Event()
    observer = _start_observer(ingester.watch_dir, wake, ingester.arrived_complete) if use_events else None
    try:
        while not stop.is_set():
            try:
                ingester.scan()
            except OperationalError as exc:  # the database restarts: what was not committed is found again
                log.warning("database unavailable during a scan (%s); trying again", describe_error(exc))
                stop.wait(min(poll_seconds, 5.0))
                continue
            except Exception:  # not any one file's doing (those are left out one by one): keep watching
                log.exception("the scan failed; trying again in %.0fs", poll_seconds)
                stop.wait(poll_seconds)
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


def _observer():  # type: ignore[no-untyped-def]
    """watchdog's observer; on Linux one that reports a file moved in from outside the folder as a move."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    from watchdog.observers import Observer

    return Observer()


def _start_observer(  # type: ignore[no-untyped-def]
    root: Path, wake: threading.Event, complete: Callable[..., None] | None = None
):
    try:
        from watchdog.events import FileSystemEventHandler
    except ImportError:
        return None

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event):  # type: ignore[no-untyped-def]
            if not event.is_directory and event.event_type in ("closed", "moved") and complete is not None:
                moved = event.event_type == "moved"
                complete(os.fsdecode(event.dest_path if moved else event.src_path), closed=not moved)
            wake.set()

    try:
        observer = _observer()
        observer.schedule(_Wake(), str(root), recursive=True)
        observer.start()
    except OSError as exc:  # e.g. too many inotify watches, or a share without events
        log.warning("file events unavailable for %s (%s); polling only", root, exc)
        return None
    return observer
